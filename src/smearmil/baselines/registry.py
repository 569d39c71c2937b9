"""The registry of baselines, named by string in comparison configs (``clinical/gnb``, ``mil/MISVM``).

An entry builds a scikit-learn-style estimator (``fit``, ``predict_proba``) and says what it can see:
``attrs`` (clinical attributes), ``imgs`` (bags of hand-crafted cell features) or ``imgs+attrs`` (the
attributes appended to every cell); the first is its default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..utils.registry import Registry

ATTRS, IMGS, IMGS_ATTRS = "attrs", "imgs", "imgs+attrs"


@dataclass(frozen=True)
class Baseline:
    factory: Callable[..., Any]  # (seed, **params) -> estimator
    data: tuple[str, ...]  # what it can be given; the first is the default

    def __call__(self, seed: int = 0, **params: Any) -> Any:
        return self.factory(seed, **params)


BASELINES: Registry[Baseline] = Registry("baseline")
