"""The paper's baselines: clinical classifiers, hand-crafted cell features with classical MIL.

Importing this package fills ``BASELINES`` (``clinical/<name>`` and ``mil/<name>``).
"""

from ..utils.registry import import_modules
from .registry import BASELINES, Baseline

__all__ = ["BASELINES", "Baseline"]

import_modules(__name__, __path__)
