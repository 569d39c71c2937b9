"""``smearmil bench demo``: the demo's wall time on an idle machine and while other processes keep every
core busy, each in a fresh process; the ratio says what contention costs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..utils.threads import usable_cores

BUSY_LOOP = "while True:\n    pass\n"


@dataclass
class DemoBench:
    idle_seconds: float
    loaded_seconds: float
    load_processes: int
    same_figures: bool  # every test-fold metric is identical with and without the load

    @property
    def ratio(self) -> float:
        return self.loaded_seconds / self.idle_seconds


@contextmanager
def busy_cores(processes: int) -> Iterator[None]:
    """``processes`` Python processes that each keep one core busy until the block ends."""
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(processes)]
    try:
        time.sleep(1.0)  # running before the timed work starts
        yield
    finally:
        for p in load:
            p.kill()
        for p in load:
            p.wait()


def timed_demo(out: Path) -> float:
    """Seconds of ``smearmil demo --out OUT`` in a fresh interpreter (as a user runs it)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "smearmil", "demo", "--out", str(out), "--overwrite", "-q"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the demo failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def bench_demo(out: Path, processes: int | None = None) -> DemoBench:
    """The demo idle, then under ``processes`` busy processes (default: one per core)."""
    processes = processes or usable_cores()
    idle = timed_demo(out / "idle")
    with busy_cores(processes):
        loaded = timed_demo(out / "loaded")
    return DemoBench(idle, loaded, processes, figures(out / "idle") == figures(out / "loaded"))


def figures(demo: Path) -> dict[str, object]:
    """Every test-fold metric of a demo's cross-validations (not their wall times)."""
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted(demo.glob("cv/*/summary.json"))}
