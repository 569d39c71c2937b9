"""Threads sized to the cores actually free.

Torch runs every operation on a team of OpenMP threads (one per core by default) that meet at a
barrier after each operation. When another process keeps the cores busy, one thread of the team is
often descheduled and the others wait for it at every barrier, spinning: a 2-core machine under load
trained the demo's CNN 5x slower with 2 threads than with 1 (`smearmil bench demo`). So threads wait
passively (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads) and each fit uses as many threads as
cores are idle when it starts. ``SMEARMIL_THREADS=N`` fixes the number instead.
"""

from __future__ import annotations

import os
import sys
import time

THREADS_VARIABLE = "SMEARMIL_THREADS"


def wait_passively() -> None:
    """Threads that sleep, not spin, while they wait (effective only before torch is imported; a value the
    user set wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _busy_and_total() -> tuple[int, int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def idle_cores(sample_seconds: float = 0.2) -> float:
    """How many cores sat idle over a short sample (Linux ``/proc/stat``; elsewhere the load average)."""
    cores = usable_cores()
    first = _busy_and_total()
    if first is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return max(0.0, cores - load)
    time.sleep(sample_seconds)
    second = _busy_and_total()
    if second is None or second[1] == first[1]:
        return float(cores)
    busy = (second[0] - first[0]) / (second[1] - first[1])
    total = os.cpu_count() or cores
    return max(0.0, min(cores, total * (1 - busy)))


def chosen_threads() -> int:
    """``SMEARMIL_THREADS`` if set, else the idle cores rounded to nearest (at least 1)."""
    given = os.environ.get(THREADS_VARIABLE, "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            raise ValueError(f"{THREADS_VARIABLE}={given!r}: give a whole number of threads, e.g. 2") from None
    return max(1, min(usable_cores(), round(idle_cores())))


def fit_threads() -> int:
    """Set torch's threads (if torch is loaded) to the cores free now; the number chosen."""
    n = chosen_threads()
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return n
