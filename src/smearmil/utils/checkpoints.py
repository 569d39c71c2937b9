"""Loading saved weights safely: tensors only (``weights_only=True``), and clear errors for files that are
not smearmil checkpoints or that hold weights of another shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_tensors(path: str | Path, what: str = "checkpoint") -> Any:
    """The tensors saved in ``path``; never unpickles code. A file that is not one: ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError (zip), EOFError, ...: all mean "not ours"
        raise ValueError(
            f"{path} is not a {what} written by smearmil ({type(error).__name__}); it was not loaded. "
            "Point to the folder of a finished run, or train again"
        ) from None


def load_state(module: nn.Module, state: Any, source: str | Path) -> nn.Module:
    """``module.load_state_dict(state)``, or ValueError naming ``source`` when the shapes or names differ."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{source}: the saved weights do not fit the model its config describes ({first}); "
            "was the file replaced, or the config edited after training?"
        ) from None
    return module
