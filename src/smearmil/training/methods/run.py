"""``kind: run``: the deep MIL models (CNN, MLP, AVG, MOE, ...) trained end to end with Lightning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.cache import build_cache
from ...data.cohort import Cohort
from ...data.splits import Fold
from ...models.base import probabilities
from ...models.contributions import bag_explanation
from ...models.kinds import MODELS, data_label
from ...utils.device import default_device
from ..config import PAPER_HINT, RUN_FLAG_PATHS, RunConfig, paper_preset
from ..fit import train_fold
from ..predictor import Prediction, Predictor, Subsets, cell_info, check_attributes
from ..trained import TrainedModel
from . import METHODS, FitSettings, Method


class RunPredictor(Predictor):
    """One trained deep model (``model.pt`` + ``model.json``)."""

    method = "run"

    def __init__(self, trained: TrainedModel):
        self.trained = trained
        self.class_names, self.data = trained.class_names, trained.config.data
        self.threshold, self.threshold_source = trained.threshold, trained.threshold_source
        self.attributes = list(trained.encoder.names)
        self.uses_images = trained.uses_images

    def predict(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        subsets: Subsets | None = None,
        explain: bool = True,
    ) -> list[Prediction]:
        ids = list(ids)
        check_attributes(self, cohort)
        trained = self.trained
        cache = (
            build_cache(cohort, trained.config.image.preprocessing, cache_dir, progress=progress)
            if (self.uses_images)
            else None
        )
        if subsets is not None or not (explain and cache is not None):
            if subsets is None:
                found = trained.predict_cohort(cohort, ids, cache)
            else:
                attributes = (
                    trained.encoder.transform(cohort, ids) if trained.encoder.names else np.zeros((len(ids), 0))
                )
                bags = [cache.bag(pid)[subsets[pid]] if cache is not None else None for pid in ids]
                found = trained.predict_arrays(ids, bags, attributes.astype(np.float32))
            return [Prediction(p.id, p.proba, p.gate) for p in found]
        image_only = trained.model.image_expert() is trained.model
        whole = {} if image_only else {p.id: p for p in trained.predict_cohort(cohort, ids, cache)}
        out = []
        for pid in ids:  # one pass of the cells gives contributions (and an image model's logits)
            contributions, logits = _explain(trained, torch.from_numpy(cache.read_bag(pid)))
            if image_only:
                proba = probabilities(logits.float()[None].cpu(), len(self.class_names))[0].numpy()
                prediction = Prediction(pid, proba.astype(np.float64))
            else:
                prediction = Prediction(pid, whole[pid].proba, whole[pid].gate)
            prediction.files, prediction.cell_types = cell_info(cohort, cache, pid)
            prediction.contributions = contributions
            out.append(prediction)
        return out

    @property
    def label(self) -> str:
        return self.trained.config.model.kind

    @property
    def preprocessing(self) -> Any:
        return self.trained.config.image.preprocessing if self.uses_images else None

    def parts(self) -> dict[str, Predictor]:
        return {name: RunPredictor(model) for name, model in self.trained.models().items()}

    def save_files(self, folder: Path) -> dict[str, Any]:
        self.trained.save(folder)
        return {"model": self.trained.config.model.kind}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Predictor:
        return cls(TrainedModel.load(folder))


def _explain(trained: TrainedModel, cells: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Contributions to every logit column and the image expert's logits, from the fast inference model."""
    device = default_device()
    transform = trained.transform.to(device).eval() if trained.transform is not None else None
    prepare = (lambda x: transform(x.to(device), train=False)) if transform is not None else None
    with torch.inference_mode():
        return bag_explanation(trained.fast_model(device), cells, prepare)


@METHODS.register("run")
class RunMethod(Method):
    """A run config: a model kind trained stage by stage on the fold's training patients, validation drawn
    inside them (``split.val``) for early stopping and the optional ``validation`` threshold."""

    kind = "run"
    Config = RunConfig
    predictor = RunPredictor
    flag_paths = RUN_FLAG_PATHS
    generated = staticmethod(paper_preset)
    hint = PAPER_HINT
    config: RunConfig

    def for_run(self, seed: int, folds: int | None = None) -> Method:
        update: dict[str, Any] = {"seed": seed}
        if folds is not None:
            update["split"] = self.config.split.model_copy(update={"folds": folds})
        return RunMethod(self.config.model_copy(update=update))

    def val_share(self) -> float:
        return self.config.split.val

    def holdout(self) -> tuple[float, float]:
        return self.config.split.val, self.config.split.test

    def data_label(self) -> str:
        return data_label(MODELS.get(self.config.model.kind).inputs())

    @property
    def uses_images(self) -> bool:
        return self.config.model.uses_images

    def fit(self, cohort: Cohort, fold: Fold, folder: Path, settings: FitSettings) -> Predictor:
        cache = None
        if self.config.model.uses_images:
            cache = build_cache(cohort, self.config.image.preprocessing, settings.cache_dir, progress=settings.progress)
        training = Fold(fold.name, fold.train, fold.val, ())
        return RunPredictor(train_fold(cohort, training, self.config, folder, cache, settings.progress))

    def lightning(self) -> dict[str, Any]:
        """The accelerator, devices and precision the run asks Lightning for (``run.json`` records them)."""
        return {k: getattr(self.config.train, k) for k in ("accelerator", "devices", "precision")}
