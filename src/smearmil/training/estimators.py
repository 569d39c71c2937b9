"""Saving fitted estimators without pickle: scikit-learn ones with skops (its loader builds only the types
it is told to trust: here scikit-learn's, NumPy's, SciPy's and smearmil's baselines), torch ones as tensors
(``weights_only=True``) with a JSON description.

An estimator class may save itself: ``save(folder) -> dict`` (what ``estimator.json`` should hold) and a
class method ``load(folder, meta)``; it then lists itself in ``OWN`` by the name ``estimator.json`` gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_path, write_json

META = "estimator.json"
SKOPS = "estimator.skops"
# the only types a saved estimator may ask for beyond skops' defaults: scikit-learn's internals that the
# baselines use, and the baselines' own classes (never a function such as builtins.eval)
TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
)
TRUSTED_MODULES = ("smearmil.baselines.",)  # classes only: the baselines' estimators
OWN: dict[str, Callable[[Path, dict[str, Any]], Any]] = {}  # type name -> load(folder, meta)


def own(name: str) -> Callable[[type], type]:
    """Class decorator: the class saves itself and loads with ``cls.load(folder, meta)``."""

    def add(cls: type) -> type:
        OWN[name] = cls.load  # type: ignore[attr-defined]
        cls.saved_as = name  # type: ignore[attr-defined]
        return cls

    return add


def save_estimator(estimator: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(estimator, "saved_as"):
        meta = {"type": estimator.saved_as, **estimator.save(folder)}
    else:
        import skops.io as sio

        with atomic_path(folder / SKOPS) as tmp:
            sio.dump(estimator, tmp)
        meta = {"type": "skops"}
    write_json(folder / META, meta)


def load_estimator(folder: Path) -> Any:
    """An estimator saved by ``save_estimator``; a file that asks for any other type is refused."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        kind = meta["type"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder / META} is not an estimator smearmil saved ({error}); train again") from None
    if kind in OWN:
        return OWN[kind](folder, meta)
    if kind != "skops":
        raise ValueError(f"{folder / META}: unknown estimator type {kind!r}; train again")
    import skops.io as sio

    path = folder / SKOPS
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if t not in TRUSTED_TYPES and not _baseline_class(t)]
    if foreign:
        raise ValueError(f"{path} asks for types smearmil does not load ({', '.join(foreign)}); train again")
    return sio.load(path, trusted=untrusted)


def _baseline_class(name: str) -> bool:
    """A class (not a function) defined in ``smearmil.baselines``."""
    if not name.startswith(TRUSTED_MODULES):
        return False
    import importlib

    module, _, attr = name.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module), attr, None), type)
    except ImportError:
        return False
