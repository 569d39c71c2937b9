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
# declared so that configs name them without importing scikit-learn; ``data``: what each can be given
_CLINICAL = ("svm", "tree", "gnb", "adaboost", "gboost", "rf", "mlp", "paper-mlp", "logreg")
for _name in _CLINICAL:
    BASELINES.declare(f"clinical/{_name}", "smearmil.baselines.clinical", data=(ATTRS,))
for _name in ("MISVM", "miSVM", "MILES", "specialising"):
    BASELINES.declare(f"mil/{_name}", "smearmil.baselines.mil", data=(IMGS, IMGS_ATTRS))
BASELINES.declare("mil/EMDD", "smearmil.baselines.emdd", data=(IMGS, IMGS_ATTRS))
BASELINES.declare("mil/instance", "smearmil.baselines.instance", data=(IMGS, IMGS_ATTRS))
BASELINES.declare("mil/histogram", "smearmil.baselines.histogram", data=(IMGS, IMGS_ATTRS))


def accepted_data(name: str) -> tuple[str, ...]:
    """What baseline ``name`` can be given (the first is its default), without building it."""
    declared = BASELINES.info(name).get("data")
    return tuple(declared) if declared is not None else BASELINES.get(name).data
