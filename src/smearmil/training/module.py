"""The LightningModule shared by every model family: one loss, batched augmentation, selection metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ..models.base import Bags, MILModel, MILOutput, probabilities
from ..utils.distributed import gather_objects
from ..utils.scoring import scores
from .augment import BatchTransform
from .config import TrainConfig


class MILModule(L.LightningModule):
    class_weights: torch.Tensor

    def __init__(
        self,
        model: MILModel,
        transform: BatchTransform | None,
        train: TrainConfig,
        class_weights: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.model, self.transform, self.cfg, self.seed = model, transform, train, seed
        self.register_buffer(
            "class_weights", class_weights if class_weights is not None else torch.ones(model.n_classes)
        )
        self.use_weights = class_weights is not None
        self._val: list[tuple[list[str], torch.Tensor, torch.Tensor]] = []  # ids, logits, labels

    def transfer_batch_to_device(self, batch: Bags, device: torch.device, dataloader_idx: int) -> Bags:
        return batch.to(device)

    def _prepare(self, batch: Bags, train: bool) -> Bags:
        """uint8 cells -> normalised float, augmented when training."""
        if batch.images is not None and batch.images.dtype == torch.uint8 and self.transform is not None:
            batch.images = self.transform(batch.images, train=train)
        return batch

    def _seed_step(self, batch_idx: int) -> None:
        """Augmentation and dropout of a step draw from (seed, epoch, step), and the process's rank when
        there are several: a run resumed after a kill repeats the uninterrupted run exactly."""
        key = [self.seed, self.current_epoch, batch_idx]
        if self.trainer.world_size > 1:
            key.append(self.global_rank)
        state = np.random.SeedSequence(key).generate_state(1)[0]
        torch.manual_seed(int(state))

    def _loss(self, batch: Bags) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch)
        assert batch.labels is not None
        loss = self.model.loss(out, batch.labels, self.class_weights if self.use_weights else None)
        return loss, out.logits

    def training_step(self, batch: Bags, batch_idx: int) -> torch.Tensor:
        self._seed_step(batch_idx)
        loss, _ = self._loss(self._prepare(batch, train=True))
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.n_bags, sync_dist=True
        )
        return loss

    def validation_step(self, batch: Bags, batch_idx: int) -> None:
        if batch.images is not None and batch.images.dtype == torch.uint8 and self.transform is not None:
            transform = self.transform  # normalised chunk by chunk inside the model: whole bags stay uint8
            batch.prepare = lambda x: transform(x, train=False)
        loss, logits = self._loss(batch)
        if self.trainer.world_size == 1:  # several processes: the loss over unique patients, at the epoch's end
            self.log("val/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.n_bags)
        assert batch.labels is not None
        self._val.append((list(batch.ids or []), logits.detach().float().cpu(), batch.labels.detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        """Validation metrics over every validation patient once, whichever process scored it (a share padded
        with a patient of another process's share counts that patient once)."""
        mine = {pid: (z, y) for ids, logits, labels in self._val for pid, z, y in zip(ids, logits, labels)}
        self._val.clear()
        everyone = {pid: v for part in gather_objects(mine) for pid, v in part.items()}
        if not everyone:
            return
        logits = torch.stack([z for z, _ in everyone.values()])
        labels = torch.stack([y for _, y in everyone.values()])
        if self.trainer.world_size > 1:
            weights = self.class_weights.cpu() if self.use_weights else None
            loss = self.model.loss(MILOutput(logits, None), labels, weights)
            self.log("val/loss", float(loss), prog_bar=True)
        proba = probabilities(logits, self.model.n_classes).numpy().astype(np.float64)
        found = scores(labels.numpy(), proba)
        self.log("val/patients", float(len(everyone)))
        for name in ("balanced_accuracy", "roc_auc", "macro_f1"):
            value = found[name]
            self.log(f"val/{name}", value if np.isfinite(value) else 0.0, prog_bar=name == "balanced_accuracy")

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        # foreach: one grouped update instead of a loop over tensors (1.5 ms -> 0.4 ms a step for cpu-cnn on
        # CPU, where it is not the default), with the same numbers as the loop
        optimizer = torch.optim.Adam(
            params, lr=self.cfg.lr, betas=self.cfg.betas, weight_decay=self.cfg.weight_decay, foreach=True
        )
        if self.cfg.lr_step_every:  # the paper's schedule: x lr_gamma every N iterations
            step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.cfg.lr_step_every, gamma=self.cfg.lr_gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": step, "interval": "step"}}
        if not self.cfg.lr_steps:
            return optimizer
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=self.cfg.lr_steps, gamma=self.cfg.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
