"""Command line: thin wrappers over the Python API (parsing and printing only).

``app`` holds the command tree; each module registers its commands on it when imported."""

from __future__ import annotations

from ..utils.threads import wait_passively
from . import bench_cmds, cell_cmds, data_cmds, paired_cmd, paper_cmds, review_cmd, run_cmds  # noqa: F401  (they register the commands)
from .app import app

wait_passively()  # torch is not loaded yet: its OpenMP threads will sleep, not spin, while they wait

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    app()
