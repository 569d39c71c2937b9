"""The command line end to end on generated data."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from smearmil.cli import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "demo", "data", "bench", "version"):
        assert command in result.output
    sub = runner.invoke(app, ["data", "--help"])
    assert all(c in sub.output for c in ("inspect", "split", "cache"))


def test_simulate_inspect_split_cache(tmp_path: Path) -> None:
    cohort = tmp_path / "c"
    result = runner.invoke(app, ["simulate", str(cohort), "--patients", "6", "--cells-per-patient", "2:3",
                                 "--size", "24", "--seed", "4", "--classes", "3", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "inspect", str(cohort), "--json"])
    report = json.loads(result.stdout)
    assert report["patients"] == 6 and report["classes"] == {"class_0": 2, "class_1": 2, "class_2": 2}
    splits = tmp_path / "s.json"
    result = runner.invoke(app, ["data", "split", str(cohort), "--folds", "2", "--val", "0", "--out", str(splits), "-q"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(splits.read_text())["folds"]) == 2
    result = runner.invoke(app, ["data", "cache", str(cohort), "--size", "16", "--cache-dir", str(tmp_path / "k"), "-q"])
    assert result.exit_code == 0 and "of 6 patients, 16 px" in result.output


def test_bench_cache_ends_with_ratio(sim_cohort: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "cache", str(sim_cohort), "--size", "32", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("ratio: ") and float(last.split()[1]) > 0


def test_demo_writes_splits_cache_and_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["simulation"]["patients"] == 60
    assert len(json.loads((tmp_path / "d" / "splits.json").read_text())["folds"]) == 5


def test_usage_error_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--cells-per-patient", "9:2"])
    assert result.exit_code == 2 and "MIN <= MAX" in result.output
