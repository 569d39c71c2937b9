"""The one Lightning trainer factory: atomic checkpoints, resumable CSV logs, named progress, quiet fits.

Both supervised stages and self-supervised pre-training train through ``make_trainer`` and ``fit``;
an interrupted run resumes from ``checkpoints/last.ckpt`` (see ``resume_point``).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..utils.checkpoints import load_tensors, save_tensors
from .logs import ResumableCSVLogger
from .progress_bar import StageProgress

# Lightning's start-up banners (GPU/TPU lines, tips) say nothing a smearmil user needs
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
QUIET = (
    r".*(does not have many workers|LeafSpec|Checkpoint directory|You have overridden|litlogger|Total length of"
    r"|when logging on epoch level in distributed|can run with static graph).*"
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written beside their target and renamed into place: a kill never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save_tensors(checkpoint, path)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto``: 16-bit mixed precision on a GPU, full float32 elsewhere (CPU, MPS)."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "16-mixed" if on_gpu and torch.cuda.is_available() else "32-true"


def _tensorboard_available() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def loggers(out: Path, last_epoch: int | None) -> list[Any]:
    """A CSV log of losses and metrics per epoch, and TensorBoard's when it is installed."""
    found: list[Any] = [ResumableCSVLogger(out, last_epoch)]
    if _tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        found.append(TensorBoardLogger(out, name="tensorboard", version=""))
    return found


def resume_point(out: Path) -> tuple[str | None, int | None]:
    """``(checkpoint, its epoch)`` of an interrupted run in ``out``, or ``(None, None)``."""
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, None
    return str(last), int(load_tensors(last, "training checkpoint")["epoch"])


def make_trainer(
    out: Path,
    max_epochs: int,
    accelerator: str,
    devices: int | str,
    precision: str,
    callbacks: list[Any],
    last_epoch: int | None,
    progress: bool = True,
    title: str = "training",
    **options: Any,
) -> L.Trainer:
    """A Trainer writing logs and atomic checkpoints in ``out``, with progress titled ``title`` (the stage:
    ``moe: gate``) unless ``progress`` is off; ``options`` go to Lightning and win (e.g. ``max_steps`` with
    ``max_epochs=-1``, ``strategy="ddp"``).

    Our samplers shard the data across processes themselves (each bag or cell once per epoch), so
    Lightning does not wrap them in its distributed sampler."""
    settings: dict[str, Any] = {
        "max_epochs": max_epochs,
        "accelerator": accelerator,
        "devices": devices,
        "precision": resolve_precision(precision, accelerator),
        "logger": loggers(out, last_epoch),
        "callbacks": [*callbacks, *([StageProgress(title)] if progress else [])],
        "plugins": [AtomicCheckpointIO()],
        "enable_progress_bar": progress,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
        "default_root_dir": out,
        "use_distributed_sampler": False,
    }
    return L.Trainer(**{**settings, **options})


def fit(trainer: L.Trainer, module: L.LightningModule, resume: str | None, **data: Any) -> None:
    """``trainer.fit`` without Lightning's chatter, resuming from ``resume`` (loaded with ``weights_only``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=QUIET)
        trainer.fit(module, ckpt_path=resume, weights_only=True, **data)


def start_processes(accelerator: str, devices: int | str, strategy: str) -> None:
    """Outside a Trainer (feature extraction): start this run's other processes, or join them, through
    Lightning Fabric's launcher; one process (the default) starts nothing."""
    if strategy == "auto" and str(devices) in ("auto", "1"):
        return
    from lightning.fabric import Fabric

    Fabric(accelerator=accelerator, devices=devices, strategy=strategy).launch()
