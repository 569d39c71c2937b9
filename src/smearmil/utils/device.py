"""The device computations run on when none is given."""

from __future__ import annotations

import torch

from .distributed import initialised


def default_device() -> torch.device:
    """The GPU if there is one (in a run of several processes, this process's own), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if initialised():  # Lightning and Fabric set each process's device (SLURM sets no LOCAL_RANK)
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda")
