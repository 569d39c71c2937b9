"""Output folders the tool owns: a marker says what wrote them and from which inputs (a fingerprint).

``claim_output`` is called before anything is written to an ``--out`` folder:

- a missing or empty folder becomes ours (the marker ``.smearmil.json`` is written first);
- a folder without our marker, or with the marker of another kind of output, is refused: the tool
  never deletes or overwrites what it did not write;
- our own output of the same kind is resumed when its fingerprint matches, refused with the fields
  that differ when it does not, and replaced (deleted, then claimed afresh) with ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .atomic import dumps_json, write_json
from .distributed import gather_objects, is_main_process, world_size
from .locks import LOCK, InUse, hold_exclusive

MARKER = ".smearmil.json"


class OutputRefused(ValueError):
    """An output folder that the tool may not (re)use as asked."""


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha256(dumps_json(obj).encode()).hexdigest()[:16]


def run_fingerprint(config: Any, data: str | None = None, splits: Any = None, **extra: Any) -> dict[str, Any]:
    """What decides a run's result: the package version, the resolved config (kept whole, so that a
    refusal can name the fields that differ), the data's identity, the splits (hashed) and any extra."""
    from .. import __version__

    if isinstance(config, Mapping):  # a config's name is a label: the same settings under another name match
        config = {k: v for k, v in config.items() if k != "name"}
    found = {
        "version": __version__,
        "config": config,
        "data": data,
        "splits": None if splits is None else digest(splits),
        **extra,
    }
    return json.loads(dumps_json(found))  # JSON types only, as read back from the marker


def read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> list[str]:
    """``key: old -> new`` for every differing leaf of two nested mappings (at most ``limit``)."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    shown = [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys[:limit]]
    return shown + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])


def claim_output(
    folder: str | Path,
    kind: str,
    fingerprint: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    version: str = "",
    **about: Any,
) -> Literal["new", "resume"]:
    """Make ``folder`` this ``kind`` of output with this ``fingerprint``; see the module docstring. ``about``
    goes into the marker too (e.g. the ``method`` of a CV)."""
    from .. import __version__

    folder = Path(folder)
    version = version or __version__
    fingerprint = dict(fingerprint or {})
    if world_size() > 1:  # processes already joined: the main one claims (or refuses) and tells the others
        outcome: str | Exception | None = None
        if is_main_process():
            try:
                outcome = _claim(folder, kind, fingerprint, overwrite, version, about)
            except Exception as failed:  # every process must hear of it, or the others wait for ever
                outcome = failed
        outcome = gather_objects(outcome)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return "resume" if outcome == "resume" else "new"
    if not is_main_process():  # a DDP run's other processes: the main one claims (Lightning starts them after)
        _wait_for_marker(folder)  # under SLURM every task starts at once: touch nothing before the claim
        return "resume"
    return _claim(folder, kind, fingerprint, overwrite, version, about)


def _wait_for_marker(folder: Path, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not (folder / MARKER).is_file():
        if time.monotonic() > deadline:
            raise OutputRefused(
                f"{folder}: the main process of this run has not claimed it within {timeout:.0f} s; see its "
                "error (process 0's output)"
            )
        time.sleep(0.5)


def _claim(
    folder: Path, kind: str, fingerprint: dict[str, Any], overwrite: bool, version: str, about: dict[str, Any]
) -> Literal["new", "resume"]:
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"{folder} is a file, not a folder; choose another output folder")
    if folder.is_dir() and _contents(folder) and read_marker(folder) is None:
        raise OutputRefused(
            f"{folder} exists and was not written by smearmil (it has no {MARKER}); it is left "
            "untouched: choose another output folder, or empty it yourself"
        )
    folder.mkdir(parents=True, exist_ok=True)
    try:  # one writer at a time: a second run into the folder is refused while the first runs
        hold_exclusive(folder)
    except InUse as busy:
        raise OutputRefused(str(busy)) from None
    if _contents(folder):
        marker = read_marker(folder) or {}
        if marker.get("kind") != kind:
            raise OutputRefused(
                f"{folder} holds a smearmil {marker.get('kind')} output, not a {kind} output; it is left "
                "untouched: choose another output folder"
            )
        if not overwrite:
            old = marker.get("fingerprint") or {}
            if old == fingerprint:
                return "resume"
            changed = "; ".join(differences(old, fingerprint))
            raise OutputRefused(
                f"{folder} holds a {kind} run of other inputs ({changed}); resuming would mix them. "
                "Pass --overwrite to replace it, or choose another output folder"
            )
        for child in _contents(folder):  # everything but the lock this run holds (it points to what --out does)
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    write_json(folder / MARKER, {"kind": kind, **about, "version": version, "fingerprint": fingerprint})
    return "new"


def _contents(folder: Path) -> list[Path]:
    """What ``folder`` holds besides a lock file."""
    return [p for p in folder.iterdir() if p.name != LOCK]


def require_output_folder(path: Path) -> None:
    """Refuse a path that is not a folder a smearmil command could have written (before any heavy import)."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path} is not a folder: give one written by a smearmil command")
