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


def save_tensors(obj: Any, target: str | Path, what: str = "checkpoint") -> None:
    """``torch.save`` atomically (``utils.atomic``). A failed write (a full disk: torch says RuntimeError)
    is an ``OSError`` naming the file, and leaves no partial file behind."""
    from .atomic import atomic_path

    target = Path(target)
    try:
        with atomic_path(target) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(
            f"{target}: the {what} could not be written ({first}); nothing partial was kept. Free disk space "
            "(or choose another --out) and run the same command again: finished work is reused"
        ) from None
