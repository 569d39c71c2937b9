"""What the image cache folder holds, and clearing it (only folders smearmil wrote: a cache index inside)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..utils.locks import in_use, release
from .cache import INDEX_FILE, alive, build_owner, default_cache_dir


@dataclass
class CacheEntry:
    path: Path
    data: str  # the data set it caches
    cells: int
    patients: int
    size_px: str  # e.g. 224 or 104 -> 64
    bytes: int
    last_used: float  # seconds since the epoch (newest file time)

    @property
    def age_days(self) -> float:
        return (time.time() - self.last_used) / 86400


def _disk_usage(folder: Path) -> tuple[int, float]:
    total, newest = 0, folder.stat().st_mtime
    for f in folder.rglob("*"):
        if f.is_file():
            stat = f.stat()
            total += stat.st_size
            newest = max(newest, stat.st_mtime, stat.st_atime)
    return total, newest


def list_caches(cache_dir: str | Path | None = None) -> list[CacheEntry]:
    """Every cache smearmil built in ``cache_dir`` (default: ``$SMEARMIL_CACHE_DIR`` or ``~/.cache/smearmil``),
    with unfinished builds (``*.building-*``); other files there are not smearmil's and are left out."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    entries = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_dir():
            continue
        try:
            index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
            prep = index["preprocessing"]
            size = f"{prep['size']}" + (f" -> {prep['crop']}" if prep.get("crop") else "")
            data, cells, patients = str(index["root"]), int(index["shape"][0]), len(index["patients"])
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            pid = build_owner(path)
            if pid is None:
                continue  # not a cache smearmil wrote
            if alive(pid):
                continue  # a build in progress: not ours to list or clear
            data, cells, patients, size = "(unfinished build)", 0, 0, "-"
        used, newest = _disk_usage(path)
        entries.append(CacheEntry(path, data, cells, patients, size, used, newest))
    return entries


def clear_caches(
    cache_dir: str | Path | None = None,
    older_than_days: float | None = None,
    data: str | Path | None = None,
    busy: list[tuple[CacheEntry, str]] | None = None,
) -> list[CacheEntry]:
    """Delete smearmil's caches (all, those unused for ``older_than_days``, or those of the data set ``data``);
    returns what was deleted. A cache that a running command reads is skipped (added to ``busy`` with who
    reads it). A cache rebuilds itself the next time a command needs it."""
    root = str(Path(data).resolve()) if data is not None else None
    removed = []
    for entry in list_caches(cache_dir):
        if older_than_days is not None and entry.age_days < older_than_days:
            continue
        if root is not None and entry.data != root:
            continue
        holder = in_use(entry.path)  # locks it against new readers until it is gone
        if holder is not None:
            if busy is not None:
                busy.append((entry, holder))
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        release(entry.path)
        removed.append(entry)
    return removed
