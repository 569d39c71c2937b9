"""Folders in use are locked: one writer per output folder, and caches that readers hold open.

A lock is ``flock`` on a ``.smearmil.lock`` file inside a folder the tool owns: exclusive for a writer
(``hold_exclusive``), shared for a reader of a cache (``hold_shared``). The operating system drops it when
the process ends, killed or not, so a dead run never blocks a new one. The file names the holder
(process id and command line), so a refusal can say who is using the folder.

Locks taken during a command are kept until ``release_all`` (the CLI calls it when a command ends); a
process that already holds a folder's lock may take it again.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import IO, Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, folders are not locked
    fcntl = None  # type: ignore[assignment]

LOCK = ".smearmil.lock"
UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_held: dict[Path, tuple[IO[str], bool]] = {}  # folder -> (open lock file, exclusive)


class InUse(ValueError):
    """A folder that another running process writes (or reads, for ``cache clear``); ``holder`` names it."""

    def __init__(self, folder: Path, holder: str, what: str):
        super().__init__(f"{folder} is in use by {holder}; {what}")
        self.holder = holder


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    text = handle.read().strip()
    return text or "another process"


def _take(folder: Path, exclusive: bool, what: str) -> None:
    folder = folder.resolve()
    mine = _held.get(folder)
    if mine is not None and (mine[1] or not exclusive):
        return
    if fcntl is None:  # pragma: no cover
        return
    # a shared lock of ours is upgraded on its own file (a second open file would conflict with it)
    handle = mine[0] if mine is not None else open(folder / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as error:
        if not isinstance(error, BlockingIOError) and error.errno in UNSUPPORTED:
            if mine is None:  # a file system without locks (some NFS, Lustre): run unlocked, as before locks
                handle.close()
            return
        if not isinstance(error, BlockingIOError):
            raise
        holder = _holder(handle)
        if mine is None:
            handle.close()
        raise InUse(folder, holder, what) from None
    if exclusive:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} ({' '.join(sys.argv[:4])[:200]})\n")
        handle.flush()
    _held[folder] = (handle, exclusive)


def hold_exclusive(folder: Path, what: str = "wait for it to finish, or choose another output folder") -> None:
    """Lock ``folder`` (which must exist and be ours) for this process's writing; ``InUse`` if another
    process holds it."""
    _take(folder, True, what)


def hold_shared(folder: Path) -> None:
    """Mark ``folder`` (a cache) as read by this process, so that ``cache clear`` leaves it alone; a
    folder this process may not write into (a read-only shared cache) is read without a lock."""
    try:
        _take(folder, False, "it is being cleared; try again")
    except PermissionError:
        return
    except OSError as error:
        if error.errno in (errno.EROFS, errno.EACCES):
            return
        raise


def in_use(folder: Path) -> str | None:
    """Who holds ``folder``'s lock (another process), or None: it may be deleted now. The check takes the
    lock exclusively and keeps it (``release``), so nobody starts using the folder meanwhile."""
    try:  # taken even where no reader has made the lock file yet: nobody starts reading meanwhile
        _take(folder, True, "")
    except InUse as busy:
        return busy.holder
    return None


def release(folder: Path) -> None:
    found = _held.pop(folder.resolve(), None)
    if found is not None:
        found[0].close()


def release_all() -> None:
    """Drop every lock this process holds (the end of a command)."""
    for handle, _ in _held.values():
        handle.close()
    _held.clear()


F = TypeVar("F", bound=Callable[..., Any])


def releasing(fn: F) -> F:
    """Run ``fn`` and then drop the locks it took (for the Python API, as the CLI does after a command)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            release_all()

    return wrapper  # type: ignore[return-value]
