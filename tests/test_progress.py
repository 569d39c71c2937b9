"""Progress people can follow: epochs counted from 1, every stage named, plain unwrapped lines in a log
(a test's stderr is not a terminal), and skipped images named by every command that reads a cohort."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smearmil.data.validation import load_cohort
from smearmil.training.config.experts import ExpertsConfig
from smearmil.training.experts_fit import fit_experts
from smearmil.utils import progress
from smearmil.utils.progress import Steps, stage

from .conftest import run_in_process, write_lymph_cohort

EPOCH = re.compile(r"^(?P<stage>.+) · epoch (?P<n>\d+)/(?P<of>\d+) · .*elapsed")


def test_a_step_in_a_log_prints_plain_lines_under_its_stages_names(capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)  # a line at every step
    with stage("cpu-moe"), stage("fold 2/5"), Steps("hand-crafted features", 300, unit="cells") as steps:
        for _ in range(3):
            steps.advance(100)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"cpu-moe · fold 2/5 · hand-crafted features: {n}/300 cells" for n in (100, 200, 300)
    ]
    assert all("left" in line for line in lines[:2]) and "left" not in lines[2]  # the time left, while there is


def test_a_slow_steps_lines_are_spaced_and_its_last_always_prints(capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY", 1e9)  # never due: only the line saying it ended
    with Steps("checking images", 3) as steps:
        for _ in range(3):
            steps.advance()
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("checking images: 3/3 (100%) · ")


def test_inner_folds_show_as_fits_naming_the_inner_fold_and_the_candidate(capsys, monkeypatch, sim_cohort) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    cohort = load_cohort(sim_cohort, progress=False)
    rng = np.random.default_rng(0)
    table = {pid: rng.normal(size=(6, 4)) for pid in cohort.ids}
    config = ExpertsConfig.model_validate(
        {"image_expert": [{"name": "mil/instance", "params": {"C": c}} for c in (0.1, 1.0)], "attribute_expert": None}
    )
    with stage("fold 2/5"):
        fitted = fit_experts(cohort, cohort.ids, config, lambda ids: [table[i] for i in ids])
    lines = capsys.readouterr().err.splitlines()
    folds = fitted.chosen["inner_folds"]
    fits = 2 * folds + 1  # each candidate in every inner fold, then the chosen one on every training patient
    assert len(lines) == fits + 1  # as each fit starts (what runs now), and when all are done
    assert lines[0].startswith(f"fold 2/5 · experts: 0/{fits} fits (0%) · inner CV 1/{folds} · image expert ")
    last = 2 * folds - 1  # the last inner fit starts with as many done
    assert lines[last].startswith(
        f"fold 2/5 · experts: {last}/{fits} fits ({100 * last // fits}%) · inner CV {folds}/{folds} · "
        "image expert mil/instance(C=1.0)"
    )
    assert "on every training patient" in lines[last + 1]
    assert lines[-1].startswith(f"fold 2/5 · experts: {fits}/{fits} fits (100%)")


@pytest.mark.slow
def test_training_in_a_log_counts_epochs_from_one_one_line_each_under_the_stage_name(
    tmp_path: Path, sim_cohort: Path, monkeypatch
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)  # one line per epoch, however fast
    monkeypatch.setattr(progress.console, "width", 50)  # narrower than every line: none may wrap
    config = tmp_path / "tiny-moe.yaml"
    config.write_text(
        "base: cpu-moe-cnn\nname: tiny-moe\nimage: {size: 32, crop: null}\nmodel: {paradigm: P2}\n"
        "train: {stages: {mlp: {epochs: 3}, moe: {epochs: 2}}}\n"
    )
    out = tmp_path / "cv"
    args = ["cv", sim_cohort, "--config", config, "--epochs", "2", "--folds", "2", "--out", out]
    result = run_in_process(*args, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "Epoch" not in result.stderr
    epochs: dict[str, list[str]] = {}
    for line in result.stderr.splitlines():
        if " · epoch " in line:
            found = EPOCH.match(line)
            assert found, f"not one whole line: {line!r}"
            epochs.setdefault(found["stage"], []).append(f"{found['n']}/{found['of']}")
    for fold in ("1/2", "2/2"):
        assert epochs[f"tiny-moe · fold {fold} · moe: cnn expert"] == ["1/2", "2/2"]  # --epochs 2
        assert epochs[f"tiny-moe · fold {fold} · moe: mlp expert"] == ["1/3", "2/3", "3/3"]
        assert epochs[f"tiny-moe · fold {fold} · moe: gate"] == ["1/2", "2/2"]
    assert len(epochs) == 6
    assert all("loss " in line for line in result.stderr.splitlines() if " · epoch " in line)


def test_results_and_progress_keep_their_order_in_one_log(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom smearmil.utils.progress import line_buffered\nline_buffered()\n"
        "print('fold 1 result')\nsys.stderr.write('fold 2 progress\\n')\nprint('fold 2 result')\n"
    )
    log = tmp_path / "run.log"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # Python's default: stdout by blocks
    with log.open("w") as handle:  # stdout and stderr into one file, as `smearmil cv ... > run.log 2>&1`
        subprocess.run(
            [sys.executable, "-c", script], stdout=handle, stderr=subprocess.STDOUT, check=True, env=buffered
        )
    assert log.read_text().splitlines() == ["fold 1 result", "fold 2 progress", "fold 2 result"]


@pytest.mark.slow
def test_ssl_cv_names_each_unreadable_image_it_skips(tmp_path: Path) -> None:
    rows = [(f"P{i}", str(i % 2), "M", "1/30/1978", "5.1") for i in range(1, 9)]
    cohort = write_lymph_cohort(tmp_path / "cohort", rows=rows)
    broken = cohort / "trainset" / "P1" / "P1_0.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a picture")
    args = ["ssl", "cv", cohort, "--method", "random", "--folds", "2", "--head-epochs", "1", "--no-umap"]
    result = run_in_process(*args, "--out", tmp_path / "ssl", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert f"warning: {broken}: patient P1: cannot be decoded" in text and "skipped" in text
    assert text.count("warning:") == 1  # once, however many folds read the cohort
