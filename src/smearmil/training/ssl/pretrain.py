"""Self-supervised pre-training of a cell encoder with Lightning: resumable, with progress and AMP on GPU.

A run folder holds ``config.yaml`` (resolved config), ``checkpoints/last.ckpt`` (written atomically every
epoch), ``logs/metrics.csv`` (loss per epoch), ``loss.png`` and, once finished, ``encoder.pt`` +
``encoder.json`` (the encoder alone, its normalisation and the patients whose cells it saw).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset, Sampler

from ...data.cache import ImageCache
from ...models.cell_encoder import ENCODER_META, CellEncoder, ChannelNormalise, channel_statistics
from ...utils.atomic import write_text
from ...utils.distributed import rank, world_size
from ...utils.outputs import claim_output, run_fingerprint
from ..run_dir import RunDir
from ..trainer import fit, make_trainer, resume_point
from .methods import SSLMethod
from .views import SSLViews

if TYPE_CHECKING:  # the config imports the SSL methods, which this package registers
    from ..config.ssl import SSLConfig

log = logging.getLogger(__name__)


@dataclass
class CellSource:
    """The cells of some patients (``None``: all) of one cached data set."""

    cache: ImageCache
    patients: Sequence[str] | None = None
    name: str = ""
    data_identity: str = ""  # the cohort's identity (cell contents); default: the cache's key

    def rows(self) -> np.ndarray:
        ids = self.cache.patient_ids if self.patients is None else self.patients
        return np.concatenate([np.asarray(self.cache.rows(i), dtype=np.int64) for i in ids] or [np.zeros(0, np.int64)])

    def identity(self) -> dict[str, Any]:
        """What this source gives pre-training: its cache (keyed by files and preprocessing) and patients."""
        ids = self.cache.patient_ids if self.patients is None else list(self.patients)
        prep = self.cache.preprocessing
        data = self.data_identity or self.cache.directory.name
        return {"data": data, "preprocessing": [prep.size, prep.crop], "patients": sorted(ids)}

    def describe(self) -> dict[str, Any]:
        ids = self.cache.patient_ids if self.patients is None else list(self.patients)
        return {"data": self.name or str(self.cache.root), "patients": sorted(ids), "cells": int(self.rows().size)}


class CellBatches(Dataset):
    """Cells of several caches as one index; an item is a whole batch (a list of indices in, uint8 out)."""

    def __init__(self, sources: Sequence[CellSource]):
        self.arrays = [s.cache.array for s in sources]
        self.index = np.concatenate(
            [np.stack([np.full(r.size, k), r], 1) for k, s in enumerate(sources) if (r := s.rows()).size]
            or [np.zeros((0, 2), np.int64)]
        )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, items: list[int]) -> torch.Tensor:
        chosen = self.index[np.sort(np.asarray(items))]
        parts = [self.arrays[k][np.sort(chosen[chosen[:, 0] == k, 1])] for k in np.unique(chosen[:, 0])]
        return torch.from_numpy(np.concatenate(parts))


class EpochBatches(Sampler[list[int]]):
    """Batches of ``size`` cells from a permutation drawn for (seed, epoch), the incomplete last one dropped;
    with several processes, each takes every ``world``-th batch and all take the same number."""

    def __init__(self, n: int, size: int, seed: int):
        self.n, self.size, self.seed, self.epoch = n, size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.size // world_size()

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        batches = order[: len(self) * world_size() * self.size].reshape(-1, self.size)
        return iter([b.tolist() for b in batches[rank() :: world_size()]])


class SSLModule(L.LightningModule):
    def __init__(self, method: SSLMethod, views: SSLViews, normalise: ChannelNormalise, config: SSLConfig):
        super().__init__()
        self.method, self.views, self.normalise, self.config = method, views, normalise, config

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        # the views of a step draw from (seed, epoch, step[, rank]): a resumed run repeats an uninterrupted one
        key = [
            self.config.seed,
            self.current_epoch,
            batch_idx,
            *([self.global_rank] if self.trainer.world_size > 1 else []),
        ]
        torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
        x = batch.permute(0, 3, 1, 2).contiguous().float() / 255.0
        views = [(v - self.normalise.mean) / self.normalise.std for v in self.views(x)]
        loss = self.method.training_loss(views, self.current_epoch)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.shape[0], sync_dist=True
        )
        return loss

    def on_after_backward(self) -> None:
        self.method.after_backward(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        total = max(1, self.trainer.estimated_stepping_batches)
        self.method.after_step(self.global_step / total)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.method.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(total - 1, self.config.warmup_epochs * max(1, total // self.config.epochs))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def pretrain(
    sources: Sequence[CellSource], config: SSLConfig, out: str | Path, progress: bool = True, overwrite: bool = False
) -> CellEncoder:
    """Pre-train ``config.encoder`` on the cells of ``sources``; resumes an interrupted run in ``out``.

    A finished run (``encoder.json`` present) of the same config and cells is loaded, not retrained; a
    run of other inputs in ``out`` is refused unless ``overwrite``.
    """
    out = Path(out)
    _check_processes(config, sum(int(s.rows().size) for s in sources))
    fingerprint = run_fingerprint(config.model_dump(mode="json"), None, sources=[s.identity() for s in sources])
    if claim_output(out, "ssl-pretrain", fingerprint, overwrite) == "resume" and (out / ENCODER_META).is_file():
        return CellEncoder.load(out)
    write_text(RunDir(out).config, config.to_yaml())
    RunDir(out).write_info(", ".join(s.name for s in sources), "", "ssl pretrain", fingerprint)
    prep = config.image.preprocessing
    for s in sources:
        if s.cache.preprocessing != prep:
            raise ValueError(
                f"{s.name or s.cache.root}: cached with {s.cache.preprocessing} but the config needs {prep}"
            )
    dataset = CellBatches(sources)
    if len(dataset) < 2:
        raise ValueError("pre-training needs at least 2 cells; the chosen patients have fewer")
    L.seed_everything(config.seed, workers=True, verbose=False)
    sample = dataset[
        list(np.random.default_rng(config.seed).choice(len(dataset), min(2000, len(dataset)), replace=False))
    ]
    normalise = ChannelNormalise(*channel_statistics(sample.numpy()))
    encoder = config.encoder.build(prep.output_size)
    method = config.build_method(encoder)
    module = SSLModule(method, SSLViews(config.view_config), normalise, config)
    batch_size = min(config.batch_size, len(dataset))
    batches = EpochBatches(len(dataset), batch_size, config.seed)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=config.num_workers,
        sampler=batches,
        pin_memory=torch.cuda.is_available() and config.accelerator != "cpu",  # copies overlap GPU compute
        prefetch_factor=4 if config.num_workers > 0 else None,
    )
    # no monitor: the one kept checkpoint is the newest, rewritten (atomically) after every epoch
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    resume, last_epoch = resume_point(out)
    trainer = make_trainer(
        out,
        config.epochs,
        config.accelerator,
        config.devices,
        config.precision,
        [checkpoint],
        last_epoch,
        progress,
        f"{config.method.name} pre-training",
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        sync_batchnorm=config.sync_batchnorm,
    )

    if resume:
        log.warning("pre-training: resuming from %s (epoch %d of %d)", resume, (last_epoch or 0) + 1, config.epochs)
    start = time.perf_counter()
    fit(trainer, module, resume, train_dataloaders=loader)
    meta = {
        "method": config.method.name,
        "config": config.name,
        "encoder": config.encoder.model_dump(),
        "epochs": config.epochs,
        "seed": config.seed,
        "sources": [s.describe() for s in sources],
        "resumed_from_epoch": None if last_epoch is None else last_epoch + 1,
        "final_loss": _final_loss(trainer),
        "wall_seconds_last_session": round(time.perf_counter() - start, 1),
    }
    result = CellEncoder(method.exported_encoder.cpu(), normalise.cpu(), prep, meta)
    _loss_plot(out)
    result.save(out)  # encoder.json last: its presence marks the run finished
    return result


def _check_processes(config: SSLConfig, cells: int) -> None:
    """Settings that cannot run, refused before the run folder is touched."""
    on_gpu = config.accelerator in ("gpu", "cuda") or (config.accelerator == "auto" and torch.cuda.is_available())
    if config.sync_batchnorm and not on_gpu:
        raise ValueError(
            "sync_batchnorm needs GPUs (torch synchronises batch norm only on CUDA GPUs); set sync_batchnorm: "
            "false to pre-train here, where each process then normalises over its own batch"
        )
    devices = config.devices
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and devices != "auto":
        devices = len([d for d in devices.split(",") if d.strip()])
    elif devices == "auto":
        devices = torch.cuda.device_count() if on_gpu else 1
    processes, batch = int(devices) * config.num_nodes, min(config.batch_size, cells)
    if cells >= 2 and cells // batch < processes:
        raise ValueError(
            f"pre-training on {cells} cells in batches of {batch} gives fewer batches than the {processes} "
            "processes: lower batch_size or use fewer devices"
        )


def _final_loss(trainer: L.Trainer) -> float | None:
    value = trainer.callback_metrics.get("train/loss")
    return None if value is None else round(float(value), 5)


def _loss_plot(out: Path) -> None:
    import csv

    from ...utils.plotting import save_figure, subplots

    path = out / "logs" / "metrics.csv"
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    if not rows:
        return
    fig, ax = subplots(figsize=(5, 3.2))
    ax.plot([int(float(r["epoch"])) + 1 for r in rows], [float(r["train/loss"]) for r in rows], marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{out.name}: self-supervised loss")
    save_figure(fig, out / "loss.png")
