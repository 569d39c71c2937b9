"""The paper's baselines: clinical classifiers, hand-crafted cell features with classical MIL.

Importing this package fills ``BASELINES`` (``clinical/<name>`` and ``mil/<name>``).
"""

from . import clinical, mil  # noqa: F401  (registration)
from .registry import BASELINES, Baseline

__all__ = ["BASELINES", "Baseline"]
