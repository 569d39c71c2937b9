"""Names that become parts of paths (fold names, method labels, patient ids in file names)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

_UNSAFE = re.compile(r"[^0-9A-Za-z._+=@,-]+")
_FOLD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# folders a run keeps beside its fold folders
RESERVED = frozenset({"methods", "report_files", "checkpoints", "logs", "tensorboard", "features", "cnn", "mlp", "moe"})


def fold_name(name: str) -> str:
    """A fold name usable as a folder beside a run's own files: letters, digits, '-' and '_' (no dot, so it
    cannot be ``summary.json`` or ``..``), and not one of the run's own folders."""
    if not _FOLD.fullmatch(name) or name in RESERVED:
        raise ValueError(
            f"fold name {name!r} cannot be used as a folder: use letters, digits, '-' and '_' (and "
            f"none of {', '.join(sorted(RESERVED))}); rename it"
        )
    return name


def safe_name(name: str, what: str) -> str:
    """``name`` unchanged if it can be one folder or file name under an output folder; else ValueError."""
    bad = (
        not name
        or name in (".", "..")
        or "\x00" in name
        or len(PurePosixPath(name).parts) != 1
        or len(PureWindowsPath(name).parts) != 1
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
    )
    if bad:
        raise ValueError(
            f"{what} {name!r} cannot be used as a folder or file name (no separators, '..' or absolute "
            "paths); rename it"
        )
    return name


def slug(name: str) -> str:
    """A file-name-safe rendering of any text (e.g. a patient id in a picture's name)."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "_"
    return cleaned[:80]


def inside(base: Path, path: Path) -> bool:
    """Whether ``path`` lies within ``base`` once both are resolved."""
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True
