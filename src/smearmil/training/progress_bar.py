"""Lightning's progress bar as smearmil's: the stage named, epochs counted from 1, the key metrics, and one
plain line per epoch in a log (``utils.progress.Epochs``) instead of Lightning's ``Epoch 0/1`` bars."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar

from ..utils.progress import Epochs

# what a line shows of the logged metrics, in this order
SHOWN = {
    "train/loss": "loss",
    "val/loss": "val loss",
    "val/balanced_accuracy": "val bal. acc",
    "val/roc_auc": "val AUC",
}


def metrics_text(metrics: Mapping[str, Any]) -> str:
    """``loss 0.412 · val loss 0.530 · val bal. acc 0.750``: the key metrics logged so far."""
    found = []
    for key, name in SHOWN.items():
        if key in metrics:
            value = float(metrics[key])
            if math.isfinite(value):
                found.append(f"{name} {value:.3f}")
    return " · ".join(found)


class StageProgress(ProgressBar):
    """Progress of one training stage titled ``title`` (e.g. ``moe: gate``), under the enclosing stages'
    names; only the main process shows it."""

    def __init__(self, title: str):
        super().__init__()
        self.title = title
        self.enabled = True
        self._epochs: Epochs | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.enabled and trainer.is_global_zero):
            return
        batches = trainer.num_training_batches
        steps = int(batches) if math.isfinite(batches) else None
        self._epochs = Epochs(self.title, int(trainer.max_epochs or 0), steps, first=trainer.current_epoch)
        self._epochs.open()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._epochs is not None:
            self._epochs.step(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epochs is not None:
            self._epochs.epoch_done(trainer.current_epoch, metrics_text(trainer.callback_metrics))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._epochs is not None:
            self._epochs.close()
            self._epochs = None
