"""Names that become parts of paths (fold names, method labels, patient ids in file names)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

_UNSAFE = re.compile(r"[^0-9A-Za-z._+=@,-]+")


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
