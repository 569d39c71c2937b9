"""A `smearmil cv` SIGKILLed at several moments (caching, training each stage, writing the summary) and
re-run with the same inputs ends with the predictions of an uninterrupted run; another seed refuses."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data.simulate import SimulationConfig, simulate

CLI = [sys.executable, "-m", "smearmil"]
CONFIG = """base: cpu-moe-cnn
image: {size: 48, crop: null}
model: {encoder: {k: 2}, paradigm: P2}
train:
  epochs: 6
  lr_steps: [4]
  stages:
    mlp: {epochs: 40}
    moe: {epochs: 3}
"""


def _cv(root: Path, config: Path, out: Path, cache: Path, seed: int = 0) -> list[str]:
    return [
        *CLI,
        "cv",
        str(root),
        "--config",
        str(config),
        "--folds",
        "2",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "-q",
    ]


def _run_until(args: list[str], moment: Callable[[], bool], log: Path, timeout: float = 300) -> str:
    """Start ``args``; SIGKILL it as soon as ``moment()`` holds. 'killed', or 'finished' if it ended first."""
    with log.open("a") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=sink)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if moment():
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return "killed"
            time.sleep(0.01)
        process.wait(timeout=timeout)
        return "finished"


def _epochs_logged(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    return sum(1 for line in metrics.read_text().splitlines()[1:] if line.strip())


@pytest.mark.slow
def test_cv_killed_at_five_moments_resumes_to_the_uninterrupted_predictions(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "cohort",
        SimulationConfig(patients=24, cells_min=12, cells_max=24, size=48, seed=5),
        progress=False,
        workers=1,
    )
    config = tmp_path / "moe.yaml"
    config.write_text(CONFIG)
    reference = subprocess.run(
        _cv(root, config, tmp_path / "reference", tmp_path / "cache-ref"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = (tmp_path / "reference" / "predictions.csv").read_text()

    out, cache, log = tmp_path / "cv", tmp_path / "cache", tmp_path / "kills.log"
    args = _cv(root, config, out, cache)
    started = time.monotonic()
    moments: dict[str, Callable[[], bool]] = {
        "caching images": lambda: any(cache.glob("*.building-*")),
        "training fold0's CNN expert": lambda: _epochs_logged(out / "fold0" / "cnn" / "logs" / "metrics.csv") >= 2,
        "training fold0's MLP expert": lambda: (out / "fold0" / "mlp" / "checkpoints" / "last.ckpt").is_file(),
        "training fold1's gate": lambda: (out / "fold1" / "moe" / "checkpoints" / "last.ckpt").is_file(),
        "writing the summary": lambda: (out / "predictions.csv").is_file() and not (out / "summary.json").is_file(),
    }
    outcomes = {}
    for name, moment in moments.items():
        outcomes[name] = _run_until(args, moment, log)
    delay = random.Random(7).uniform(0.5, 6.0)
    random_start = time.monotonic()
    outcomes[f"at random, {delay:.1f} s in"] = _run_until(args, lambda: time.monotonic() - random_start > delay, log)
    killed = [name for name, outcome in outcomes.items() if outcome == "killed"]
    assert len(killed) >= 5, outcomes
    final = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    assert final.returncode == 0, final.stderr[-3000:]
    assert (out / "predictions.csv").read_text() == expected, f"kills: {outcomes}"
    assert (out / "summary.json").is_file() and time.monotonic() - started < 900
    other = CliRunner().invoke(app, _cv(root, config, out, cache, seed=1)[len(CLI) :])  # in-process: no start-up
    assert other.exit_code == 2 and "seed: 0 -> 1" in " ".join(other.output.split())
    assert "--overwrite" in other.output and "Traceback" not in other.output
    assert (out / "predictions.csv").read_text() == expected
