"""The device computations run on when none is given."""

from __future__ import annotations

import os

import torch

from .distributed import initialised


def default_device() -> torch.device:
    """The GPU if there is one (in a run of several processes, this process's own), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if initialised():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return torch.device("cuda")
