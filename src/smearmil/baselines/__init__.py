"""The paper's baselines: clinical classifiers, hand-crafted cell features with classical MIL.

``BASELINES`` (``clinical/<name>`` and ``mil/<name>``) declares them in ``baselines.registry``, without
importing scikit-learn; a baseline's module loads when it is built.
"""

from .registry import BASELINES, Baseline

__all__ = ["BASELINES", "Baseline"]
