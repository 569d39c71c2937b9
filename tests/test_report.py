"""Repeatability and the self-contained report of a CV run, rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data.simulate import SimulationConfig, simulate

runner = CliRunner()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed")
    return exe


def render(page: Path, tmp: Path) -> tuple[str, str]:
    """The DOM after load (with the page's own image/error check) and Chromium's log."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout, result.stderr


def check(dom: str, log: str) -> tuple[int, int, int, list[str]]:
    images = re.search(r'data-images="(\d+)/(\d+)"', dom)
    errors = re.search(r'data-errors="(\d+)"', dom)
    assert images and errors, "the page's load check did not run"
    console_errors = [
        line for line in log.splitlines() if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)
    ]
    return int(images[1]), int(images[2]), int(errors[1]), console_errors


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("report")
    cohort = simulate(
        base / "cohort", SimulationConfig(patients=12, cells_min=6, cells_max=10, size=32, seed=8), progress=False
    )
    config = base / "tiny.yaml"
    config.write_text(
        "base: cpu-moe-cnn\nimage: {size: 32, crop: null}\n"
        "train: {epochs: 2, stages: {mlp: {epochs: 5}, moe: {epochs: 1}}}\n"
    )
    result = runner.invoke(
        app,
        [
            "cv",
            str(cohort),
            "--config",
            str(config),
            "--folds",
            "3",
            "--out",
            str(base / "cv"),
            "--cache-dir",
            str(base / "k"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    return cohort, base / "cv", base / "k"


@pytest.mark.slow
def test_repeatability_json_and_table(cv_run: tuple[Path, Path, Path]) -> None:
    cohort, run, cache = cv_run
    result = runner.invoke(
        app,
        [
            "repeatability",
            str(run),
            str(cohort),
            "--sets",
            "4",
            "--fraction",
            "0.5",
            "--json",
            "--cache-dir",
            str(cache),
        ],
    )
    assert result.exit_code == 0, result.output
    public = json.loads(result.stdout)
    assert set(public) == {"models"} and set(public["models"]) == {"CNN", "MLP", "AVG", "MOE"}
    for m in public["models"].values():
        assert set(m) == {"disagreement_rate", "majority_vote_accuracy"} and 0 <= m["disagreement_rate"] <= 1
    full = json.loads((run / "repeatability.json").read_text())
    assert full["models"]["MLP"]["disagreement_rate"] == 0.0  # attributes do not change between image sets
    patients = full["patients"]["MOE"]
    assert len(patients) == 12 and all(p["sets"] == 4 for p in patients.values())  # every patient, from its test fold
    assert (run / "repeatability.png").is_file()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(cv_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cohort, run, cache = cv_run
    if not (run / "repeatability.json").is_file():
        runner.invoke(app, ["repeatability", str(run), str(cohort), "--sets", "3", "--cache-dir", str(cache), "-q"])
    result = runner.invoke(app, ["report", str(run), "--galleries", "2", "--cache-dir", str(cache), "-q"])
    assert result.exit_code == 0, result.output
    page = run / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    for heading in (
        "Data",
        "Results (test patients)",
        "Training curves",
        "Repeatability",
        "Cells that drive the decision",
        "Resolved configuration",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert (run / "report.md").read_text().count("![") == text.count("<img")
    loaded, total, errors, console = check(*render(page, tmp_path))
    assert total >= 6 and loaded == total and errors == 0 and not console
    # the check does notice a broken image
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    loaded, total, _, _ = check(*render(broken, tmp_path))
    assert loaded == total - 1
