"""Training a fold: the stages each model kind needs, each resumable from its last checkpoint.

cnn: one stage. mlp: one stage. avg: cnn and mlp stages, averaged. moe P1: the mixture end to end
from scratch; P2: cnn and mlp stages, then only the gate; P3: cnn and mlp stages, then all of it.
A finished stage leaves ``model.pt``; an interrupted one resumes from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

from ..data.attributes import AttributeEncoder
from ..data.cache import ImageCache
from ..data.cohort import Cohort
from ..data.splits import Fold
from ..models.base import MILModel
from ..models.config import EncoderConfig, build_cnn, build_model
from ..models.experts import CNNModel, MLPModel
from ..models.fusion import AverageModel, MixtureOfExperts
from ..utils.atomic import atomic_path, write_json
from ..utils.scoring import best_threshold
from .augment import BatchTransform, pixel_statistics
from .config import RunConfig, TrainConfig
from .data import BagDataModule, FoldData
from .logs import ResumableCSVLogger
from .module import MILModule
from .trained import TrainedModel

log = logging.getLogger(__name__)
# Lightning's start-up banners (GPU/TPU lines, tips) say nothing a smearmil user needs
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
_QUIET = r".*(does not have many workers|LeafSpec|Checkpoint directory|You have overridden|litlogger|Total length of).*"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written beside their target and renamed into place: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def _tensorboard_available() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def _loggers(stage_dir: Path, last_epoch: int | None) -> list[Any]:
    """A CSV log of losses and metrics per epoch, and TensorBoard's when it is installed."""
    loggers: list[Any] = [ResumableCSVLogger(stage_dir, last_epoch)]
    if _tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(stage_dir, name="tensorboard", version=""))
    return loggers


def fit_stage(stage: str, model: MILModel, data: FoldData, transform: BatchTransform | None, train: TrainConfig,
              stage_dir: Path, seed: int, progress: bool = True) -> MILModel:
    """Train ``model`` for one stage (or load it if the stage already finished); returns the best weights."""
    final = stage_dir / "model.pt"
    if final.is_file():
        model.load_state_dict(torch.load(final, map_location="cpu", weights_only=True))
        return model
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = BagDataModule(data, model.uses_images, train.bags_per_batch, train.balance,
                               train.max_cells_per_bag, train.num_workers, seed)
    module = MILModule(model, transform, train, data.class_weights() if train.balance == "weights" else None)
    monitor = f"val/{train.select_metric}" if data.ids["val"] and train.select_metric != "last" else None
    checkpoint = ModelCheckpoint(dirpath=stage_dir / "checkpoints", filename="best", monitor=monitor,
                                 mode="min" if train.select_metric == "loss" else "max", save_last=True,
                                 save_top_k=1, enable_version_counter=False)  # Lightning saves last only with a top-k save
    callbacks: list[Any] = [checkpoint]
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    last = stage_dir / "checkpoints" / "last.ckpt"
    resume = str(last) if last.is_file() else None
    last_epoch = int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) if resume else None
    trainer = L.Trainer(
        max_epochs=train.epochs, accelerator=train.accelerator, devices=train.devices,
        precision=resolve_precision(train.precision), logger=_loggers(stage_dir, last_epoch), callbacks=callbacks,
        plugins=[AtomicCheckpointIO()], enable_progress_bar=progress, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1, default_root_dir=stage_dir,
    )
    if resume:
        log.warning("stage %s: resuming from %s", stage, last)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_QUIET)
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    best = checkpoint.best_model_path if monitor and checkpoint.best_model_path else str(last)
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    score = checkpoint.best_model_score
    write_json(stage_dir / "stage.json", {
        "stage": stage, "epochs": train.epochs, "selected": Path(best).name, "monitor": monitor,
        "best_score": None if score is None else float(score), "resumed_from": resume,
    })
    with atomic_path(final) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


def prepare_fold(cohort: Cohort, fold: Fold, config: RunConfig, cache: ImageCache | None) -> tuple[FoldData, AttributeEncoder, BatchTransform | None]:
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
        transform = BatchTransform(pixel_statistics(cache, ids["train"], seed=config.seed), a.flips, a.rot90,
                                   a.pca_colour_std, config.train.mean_centring)
    return data, encoder, transform


def initialise_encoders(model: MILModel, config: EncoderConfig) -> MILModel:
    """Load the pre-trained weights ``config.init`` names into every CNN expert of ``model`` (fine-tuning)."""
    if config.init is None:
        return model
    from .ssl.encoder import CellEncoder

    try:
        pretrained = CellEncoder.load(config.init)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"model.encoder.init: {err}; give a `smearmil ssl pretrain` folder") from err
    shape = {k: pretrained.meta["encoder"][k] for k in ("name", "k", "blocks")}
    if shape != {k: getattr(config, k) for k in shape}:
        raise ValueError(f"model.encoder.init: {config.init} holds a {shape} encoder; set model.encoder to the same "
                         "name, k and blocks to fine-tune it")
    for cnn in (m for m in model.modules() if isinstance(m, CNNModel)):
        cnn.encoder.load_state_dict(pretrained.encoder.state_dict())
    return model


def _stage_runner(data: FoldData, transform: BatchTransform | None, config: RunConfig, out: Path,
                  progress: bool) -> Callable[[str, Callable[[], MILModel], int], MILModel]:
    def run(stage: str, build: Callable[[], MILModel], offset: int) -> MILModel:
        seed = config.seed * 100 + offset
        with torch.random.fork_rng():  # weights start from the stage's seed, whatever ran before
            torch.manual_seed(seed)
            model = build()
        return fit_stage(stage, model, data, transform, config.train.for_stage(stage), out / stage, seed, progress)

    return run


def train_fold(cohort: Cohort, fold: Fold, config: RunConfig, out: str | Path, cache: ImageCache | None,
               progress: bool = True) -> TrainedModel:
    """Train every stage of ``config.model`` on one fold and save the final model in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    data, encoder, transform = prepare_fold(cohort, fold, config, cache)
    n_classes, n_attr, size = len(cohort.class_names), len(encoder.feature_names), config.image.input_size
    run = _stage_runner(data, transform, config, out, progress)
    m = config.model
    if m.kind in ("cnn", "mlp") or (m.kind == "moe" and m.paradigm == "P1"):
        model = run(m.kind, lambda: initialise_encoders(build_model(m, n_classes, n_attr, size), m.encoder), 0)
    else:
        cnn = run("cnn", lambda: initialise_encoders(build_cnn(m, n_classes, size), m.encoder), 1)
        mlp = run("mlp", lambda: MLPModel(n_attr, n_classes, m.mlp_hidden), 2)
        if m.kind == "avg":
            model = AverageModel(cnn, mlp)
        else:
            model = run("moe", lambda: MixtureOfExperts(cnn, mlp, n_attr, m.gate_projection,
                                                        freeze_experts=m.paradigm == "P2"), 3)  # type: ignore[arg-type]
    trained = TrainedModel(model, transform, encoder, config, list(cohort.class_names))
    if config.train.threshold == "validation" and n_classes == 2 and data.ids["val"]:
        val = trained.predict_cohort(cohort, data.ids["val"], cache)
        y = np.array([data.labels[p.id] for p in val])
        trained.threshold = best_threshold(y, np.array([p.proba[1] for p in val]))
        trained.threshold_source = "validation"
    trained.save(out)
    return trained
