"""Training a fold: the stages its model kind lists, each resumable from its last checkpoint.

Each registered model kind says which stages train it (e.g. moe P2: the cnn and mlp experts, then
only the gate). A finished stage leaves ``model.pt``; an interrupted one resumes from
``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ..data.attributes import AttributeEncoder
from ..data.cache import ImageCache
from ..data.cohort import Cohort
from ..data.splits import Fold
from ..models.base import MILModel
from ..models.inference import use_channels_last
from ..models.kinds import ModelDims, kind_of
from ..utils.atomic import write_json, write_text
from ..utils.checkpoints import load_state, load_tensors, save_tensors
from ..utils.scoring import best_threshold
from .augment import BatchTransform, pixel_statistics
from .config import RunConfig, TrainConfig
from .data import BagDataModule, FoldData
from .module import MILModule
from .run_dir import RunDir
from .trained import TrainedModel
from .trainer import fit, make_trainer, resume_point

log = logging.getLogger(__name__)


def fit_stage(
    stage: str,
    model: MILModel,
    data: FoldData,
    transform: BatchTransform | None,
    train: TrainConfig,
    stage_dir: Path,
    seed: int,
    progress: bool = True,
    title: str = "",
) -> MILModel:
    """Train ``model`` for one stage (or load it if the stage already finished); returns the best weights.
    Its progress is titled ``title`` (default: the stage's name)."""
    final = stage_dir / "model.pt"
    if final.is_file():
        load_state(model, load_tensors(final, "model checkpoint"), final)
        return model
    L.seed_everything(seed, workers=True, verbose=False)
    if train.channels_last:
        use_channels_last(model)
    datamodule = BagDataModule(
        data, model.uses_images, train.bags_per_batch, train.balance, train.max_cells_per_bag, train.num_workers, seed
    )
    module = MILModule(model, transform, train, data.class_weights() if train.balance == "weights" else None, seed)
    monitor = f"val/{train.select_metric}" if data.ids["val"] and train.select_metric != "last" else None
    checkpoint = ModelCheckpoint(
        dirpath=stage_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="min" if train.select_metric == "loss" else "max",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )  # Lightning saves last only with a top-k save
    resume, last_epoch = resume_point(stage_dir)
    trainer = make_trainer(
        stage_dir,
        1,
        train.accelerator,
        train.devices,
        train.precision,
        [checkpoint],
        last_epoch,
        progress,
        title or stage,
        num_sanity_val_steps=0,
        strategy=train.strategy,
        num_nodes=train.num_nodes,
    )
    bags_per_process = math.ceil(len(data.ids["train"]) / trainer.world_size)
    max_epochs, schedule = iteration_schedule(train, math.ceil(bags_per_process / train.bags_per_batch))
    trainer.fit_loop.max_epochs = max_epochs
    trainer.check_val_every_n_epoch = schedule.get("check_val_every_n_epoch", 1)
    if resume:
        log.warning("stage %s: resuming from %s", stage, resume)
    fit(trainer, module, resume, datamodule=datamodule)
    best = (
        checkpoint.best_model_path
        if monitor and checkpoint.best_model_path
        else str(stage_dir / "checkpoints" / "last.ckpt")
    )
    state = load_tensors(best, "training checkpoint")["state_dict"]
    load_state(module, state, best)
    score = checkpoint.best_model_score
    write_json(
        stage_dir / "stage.json",
        {
            "stage": stage,
            "epochs": max_epochs,
            "max_steps": train.max_steps or None,
            "iterations": trainer.global_step,  # optimizer steps taken (all of them, resumed runs included)
            "selected": Path(best).name,
            "monitor": monitor,
            "best_score": None if score is None else float(score),
            "resumed_from": resume,
        },
    )
    save_tensors(model.state_dict(), final, "model")
    return model


def iteration_schedule(train: TrainConfig, steps_per_epoch: int) -> tuple[int, dict[str, Any]]:
    """``(max_epochs, trainer options)`` of a schedule in iterations. Training stops at the end of the epoch
    that reaches ``max_steps`` and validates at the end of an epoch every ``val_every_steps`` iterations
    (rounded to whole epochs), so every checkpoint falls between epochs and a killed run resumes exactly."""
    steps_per_epoch = max(1, steps_per_epoch)
    epochs = math.ceil(train.max_steps / steps_per_epoch) if train.max_steps else train.epochs
    options: dict[str, Any] = {}
    if train.val_every_steps:
        options["check_val_every_n_epoch"] = max(1, round(train.val_every_steps / steps_per_epoch))
    return epochs, options


def prepare_fold(
    cohort: Cohort, fold: Fold, config: RunConfig, cache: ImageCache | None
) -> tuple[FoldData, AttributeEncoder, BatchTransform | None]:
    """Labels, attributes encoded with training statistics, pixel statistics of the training cells."""
    labels = {p.id: cohort.label_index(p) for p in cohort.labelled()}
    names = config.model.attributes if config.model.uses_attributes else []
    encoder = AttributeEncoder(names, config.model.log_attributes, config.data.missing_policy)
    ids = {"train": list(fold.train), "val": list(fold.val), "test": list(fold.test)}
    everyone = ids["train"] + ids["val"] + ids["test"]
    if names:
        encoder.fit(cohort, ids["train"])
        encoded = encoder.transform(cohort, everyone)
    else:
        encoder.medians = {"_": 0.0}  # fitted, with no attribute
        encoded = np.zeros((len(everyone), 0), np.float32)
    data = FoldData(cache, ids, labels, dict(zip(everyone, encoded)), len(cohort.class_names))
    transform = None
    if config.model.uses_images:
        assert cache is not None, "image models need the image cache"
        a = config.train.augment
        transform = BatchTransform(
            pixel_statistics(cache, ids["train"], seed=config.seed),
            a.flips,
            a.rot90,
            a.pca_colour_std,
            config.train.mean_centring,
            a.pca_colour_scale,
        )
    return data, encoder, transform


def _fresh(build: Any, seed: int) -> MILModel:
    with torch.random.fork_rng():  # weights start from the stage's seed, whatever ran before
        torch.manual_seed(seed)
        return build()


def train_fold(
    cohort: Cohort, fold: Fold, config: RunConfig, out: str | Path, cache: ImageCache | None, progress: bool = True
) -> TrainedModel:
    """Train every stage of ``config.model`` on one fold and save the final model in ``out``."""
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    write_text(run.config, config.to_yaml())
    data, encoder, transform = prepare_fold(cohort, fold, config, cache)
    dims = ModelDims(len(cohort.class_names), len(encoder.feature_names), config.image.input_size)
    kind = kind_of(config.model)
    done: dict[str, MILModel] = {}
    for stage in kind.stages(config.model, dims):
        seed = config.seed * 100 + stage.seed_offset
        model = _fresh(lambda: stage.build(done), seed)  # noqa: B023 (called at once)
        done[stage.name] = fit_stage(
            stage.name,
            model,
            data,
            transform,
            config.train.for_stage(stage.name),
            run.stage_dir(stage.name),
            seed,
            progress,
            stage.label(config.model.kind),
        )
    model = kind.assemble(done, config.model, dims)
    trained = TrainedModel(model, transform, encoder, config, list(cohort.class_names))
    if config.train.threshold == "validation" and dims.n_classes == 2 and data.ids["val"]:
        val = trained.predict_cohort(cohort, data.ids["val"], cache)
        y = np.array([data.labels[p.id] for p in val])
        trained.threshold = best_threshold(y, np.array([p.proba[1] for p in val]))
        trained.threshold_source = "validation"
    trained.save(run.path)
    return trained
