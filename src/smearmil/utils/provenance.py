"""What made a run: versions, source checkout, machine, device and the exact command (for ``run.json``)."""

from __future__ import annotations

import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

COMMAND_LINE: list[str] | None = None  # set by the command line; else sys.argv


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the checkout smearmil runs from (with ``+dirty`` if it has changes), or None."""
    here = (start or Path(__file__)).resolve()
    if not any((p / ".git").exists() for p in here.parents):
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(here.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here.parent), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except (ImportError, AttributeError):
        return None


def provenance(command: str, fingerprint: str | None = None) -> dict[str, Any]:
    """Everything needed to tell how a run was made and to make it again."""
    import torch

    from .. import __version__
    from .device import default_device

    device = default_device()
    return {
        "command": command,
        "argv": shlex.join(COMMAND_LINE or sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "versions": {
            "smearmil": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": _version("lightning"),
            "numpy": _version("numpy"),
        },
        "git_commit": git_commit(),
        "platform": platform.platform(),
        # this machine's default device; the settings a run asked Lightning for are under "lightning"
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "threads": torch.get_num_threads(),
        "fingerprint": fingerprint,
    }
