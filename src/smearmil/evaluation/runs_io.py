"""Finding the trained models of a run folder, whichever command wrote it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.splits import SplitPlan
from ..training.trained import TrainedModel


@dataclass
class FoldModel:
    fold: str
    model: TrainedModel
    test_ids: list[str]


def fold_models(run: str | Path) -> list[FoldModel]:
    """The models of ``run`` with the patients each may be judged on (its test patients, never its own
    training ones): every fold of a ``cv`` folder, or the single model of a ``train`` folder."""
    run = Path(run)
    plan = SplitPlan.load(run / "splits.json")
    if (run / "model.json").is_file():
        fold_name = json.loads((run / "metrics.json").read_text())["fold"] if (run / "metrics.json").is_file() else None
        fold = next((f for f in plan.folds if f.name == fold_name), plan.folds[0])
        return [FoldModel(fold.name, TrainedModel.load(run), list(fold.test))]
    out = [FoldModel(f.name, TrainedModel.load(run / f.name), list(f.test)) for f in plan.folds
           if (run / f.name / "model.json").is_file()]
    if not out:
        raise FileNotFoundError(f"{run} holds no trained model: give a folder written by `smearmil train` or `smearmil cv`")
    return out


def run_data_path(run: str | Path) -> Path | None:
    """The data set a run was trained on, as recorded in ``run.json``."""
    path = Path(run) / "run.json"
    return Path(json.loads(path.read_text())["data"]) if path.is_file() else None
