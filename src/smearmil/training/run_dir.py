"""A run folder and the files every command writes there, with its folds and fitted predictors.

``train`` writes one predictor at the top (``predictor.json``, ``metrics.json`` naming its fold); ``cv``
writes one sub-folder per fold; both write ``splits.json``, ``config.yaml`` and ``run.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.splits import Fold, SplitPlan
from ..utils.atomic import write_json
from ..utils.outputs import digest
from ..utils.provenance import provenance
from .predictor import PREDICTOR_META, Predictor, is_predictor, load_one


@dataclass
class FoldModel:
    fold: str
    model: Predictor
    test_ids: list[str]


class RunDir:
    """The files of a run folder by name, and what they say."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        """The resolved config the run used."""
        return self.path / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.path / "splits.json"

    @property
    def summary(self) -> Path:
        """Test-fold metrics of a CV or comparison; written last, so its presence marks a finished run."""
        return self.path / "summary.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def info(self) -> Path:
        """``run.json``: the data set and command that made the run."""
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        """``metrics.json`` of a ``train`` run: val and test metrics and the fold trained on."""
        return self.path / "metrics.json"

    @property
    def repeatability(self) -> Path:
        return self.path / "repeatability.json"

    @property
    def model_meta(self) -> Path:
        """``predictor.json`` of a folder that holds one fitted predictor (a ``train`` run, or a fold)."""
        return self.path / PREDICTOR_META

    def fold_dir(self, fold: str) -> Path:
        return self.path / fold

    def stage_dir(self, stage: str) -> Path:
        """Where one training stage of a model (``cnn``, ``mlp``, ``moe``, ...) keeps its checkpoints."""
        return self.path / stage

    def plan(self) -> SplitPlan:
        return SplitPlan.load(self.splits)

    def read_json(self, path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_info(self, data: str | Path, layout: str, command: str, fingerprint: Any = None, **extra: Any) -> None:
        """``run.json``: the data, the command and the provenance of the run (versions, commit, host, device)."""
        found = digest(fingerprint) if fingerprint is not None else None
        write_json(self.info, {"data": str(data), "layout": layout, **extra, **provenance(command, found)})

    def data_path(self) -> Path | None:
        """The data set the run was trained on, as recorded in ``run.json``."""
        info = self.read_json(self.info)
        return Path(info["data"]) if info else None

    @property
    def is_single_model(self) -> bool:
        """A ``train`` folder (one model at the top), rather than a ``cv`` folder of folds."""
        return self.model_meta.is_file()

    def own_fold(self, plan: SplitPlan | None = None) -> Fold:
        """The fold a ``train`` run trained on (named in ``metrics.json``; else the first)."""
        metrics = self.read_json(self.metrics)
        return (plan or self.plan()).fold(metrics["fold"] if metrics else None)

    def fold_models(self) -> list[FoldModel]:
        """The models of the run with the patients each may be judged on (its test patients, never its
        own training ones): every fold of a ``cv`` folder, or the single model of a ``train`` folder."""
        plan = self.plan()
        if self.is_single_model:
            fold = self.own_fold(plan)
            return [FoldModel(fold.name, load_one(self.path), list(fold.test))]
        found = [
            FoldModel(f.name, load_one(self.fold_dir(f.name)), list(f.test))
            for f in plan.folds
            if is_predictor(self.fold_dir(f.name))
        ]
        if not found:
            raise FileNotFoundError(
                f"{self.path} holds no trained model: give a folder written by `smearmil train` or `smearmil cv`"
            )
        return found
