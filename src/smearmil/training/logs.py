"""A CSV log of losses and metrics per epoch that survives a resume (Lightning's rewrites it)."""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ResumableWriter(ExperimentWriter):
    """Keeps the rows of epochs up to ``last_epoch`` (those the checkpoint covers); drops later ones."""

    def __init__(self, log_dir: str, last_epoch: int | None):
        self.last_epoch = last_epoch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        if self.last_epoch is None:
            os.remove(self.metrics_file_path)
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            kept = [row for row in reader if row.get("epoch") and int(float(row["epoch"])) <= self.last_epoch]
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.metrics_file_path)
        self.metrics_keys = fields


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/logs/metrics.csv`` after every step, continued on resume."""

    def __init__(self, save_dir: str | os.PathLike[str], last_epoch: int | None = None):
        super().__init__(str(save_dir), name="logs", version="", flush_logs_every_n_steps=1)
        self._last_epoch = last_epoch

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(self.log_dir, self._last_epoch)
        return self._experiment
