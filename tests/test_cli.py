"""The command line end to end on generated data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
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
    result = runner.invoke(
        app,
        [
            "simulate",
            str(cohort),
            "--patients",
            "6",
            "--cells-per-patient",
            "2:3",
            "--size",
            "24",
            "--seed",
            "4",
            "--classes",
            "3",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "inspect", str(cohort), "--json"])
    report = json.loads(result.stdout)
    assert report["patients"] == 6 and report["classes"] == {"class_0": 2, "class_1": 2, "class_2": 2}
    splits = tmp_path / "s.json"
    result = runner.invoke(
        app, ["data", "split", str(cohort), "--folds", "2", "--val", "0", "--out", str(splits), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(splits.read_text())["folds"]) == 2
    result = runner.invoke(
        app, ["data", "cache", str(cohort), "--size", "16", "--cache-dir", str(tmp_path / "k"), "-q"]
    )
    assert result.exit_code == 0 and "of 6 patients, 16 px" in result.output


def test_bench_cache_ends_with_ratio(sim_cohort: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "cache", str(sim_cohort), "--size", "32", "--cache-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("ratio: ") and float(last.split()[1]) > 0


@pytest.mark.slow
def test_demo_pipeline_writes_splits_cache_comparison_and_config(tmp_path: Path, monkeypatch) -> None:
    from smearmil import demo
    from smearmil.data.simulate import SimulationConfig

    monkeypatch.setattr(demo, "DEMO_SIMULATION", SimulationConfig(patients=9, cells_min=3, cells_max=5, size=32))
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", {"image": {"size": 32, "crop": None}, "train": {"epochs": 1}})
    monkeypatch.setattr(
        demo,
        "DEMO_METHOD_OVERRIDES",
        {"mlp": {"train": {"epochs": 2}}, "moe": {"train": {"stages": {"mlp": {"epochs": 2}, "moe": {"epochs": 1}}}}},
    )
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "-q"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["simulation"]["patients"] == 9 and set(config["methods"]) == {"cnn", "mlp", "moe"}
    assert len(json.loads((tmp_path / "d" / "splits.json").read_text())["folds"]) == 3
    table = (tmp_path / "d" / "comparison.md").read_text()
    assert all(f"| {m} |" in table for m in ("cnn", "mlp", "moe"))
    for m in ("cnn", "mlp", "moe"):
        summary = json.loads((tmp_path / "d" / "cv" / m / "summary.json").read_text())
        assert summary["split"] == "test"
    report = tmp_path / "d" / "cv" / "moe" / "report.html"
    assert f"report -> {report}" in result.output.replace("\n", "")
    assert "<h2>Comparison on the same folds (test patients)</h2>" in report.read_text()
    # every step's result is printed when it is known: the models' lines come before the final table
    text = " ".join(result.output.split())
    finished = [text.index(f"{m}: BA ") for m in ("cnn", "mlp", "moe")]
    assert finished == sorted(finished) and finished[-1] < text.index("3-fold CV on the simulated cohort")
    # the README's list of what the demo writes is what it writes
    promised = readme_demo_files()
    assert promised, "README lost its demo-files list"
    for name in promised:
        assert (tmp_path / "d" / name).exists(), f"README promises smearmil-demo/{name}"
    top = {p.name + ("/" if p.is_dir() else "") for p in (tmp_path / "d").iterdir() if not p.name.startswith(".")}
    assert top <= {name.split("/")[0] + ("/" if "/" in name else "") for name in promised}, top


def readme_demo_files() -> list[str]:
    """The paths the README's demo-files list promises (relative to the demo folder)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- demo-files")[1].split("<!-- end demo-files -->")[0]
    return [p for p in re.findall(r"`([^`\s]+)`", block) if "." in p or p.endswith("/")]


@pytest.mark.slow
def test_train_evaluate_predict_and_cv_commands(tmp_path: Path, sim_cohort: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "base: cpu-moe-cnn\nimage: {size: 32, crop: null}\n"
        "train: {epochs: 1, stages: {mlp: {epochs: 2}, moe: {epochs: 1}}}\n"
    )
    run, cache = tmp_path / "run", tmp_path / "cache"
    result = runner.invoke(
        app, ["train", str(sim_cohort), "--config", str(config), "--out", str(run), "--cache-dir", str(cache), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "test (" in result.output and "val (" in result.output
    assert (run / "config.yaml").read_text().startswith("name: tiny")
    result = runner.invoke(app, ["evaluate", str(run), str(sim_cohort), "--json", "--cache-dir", str(cache)])
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["n_patients"] == len(
        json.loads((run / "splits.json").read_text())["folds"][0]["test"]
    )
    attributes = tmp_path / "attrs.csv"
    attributes.write_text("ID,DOB,LYMPH_COUNT\nP000,1/1/1950,12.0\n")
    result = runner.invoke(
        app,
        [
            "predict",
            str(run),
            str(sim_cohort / "trainset" / "P000"),
            "--attributes",
            str(attributes),
            "--json",
            "--top",
            "2",
            "--out",
            str(tmp_path / "pred"),
        ],
    )
    assert result.exit_code == 0, result.output
    [patient] = json.loads(result.stdout)["patients"]
    assert patient["patient"] == "P000" and len(patient["top_cells"]) == 2 and 0 < patient["gate_image_expert"] < 1
    result = runner.invoke(
        app, ["predict", str(run), str(sim_cohort / "trainset" / "P000"), "--out", str(tmp_path / "p2")]
    )
    assert result.exit_code == 2 and "--attributes" in result.output  # the MOE needs attributes
    result = runner.invoke(
        app,
        [
            "cv",
            str(sim_cohort),
            "--config",
            str(config),
            "--folds",
            "2",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "cv"),
            "--cache-dir",
            str(cache),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((tmp_path / "cv" / "summary.json").read_text())


def test_bad_config_is_reported_clearly(tmp_path: Path, sim_cohort: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {kind: cnn, pooling: {name: median}}\ntrain: {epochs: 0}\n")
    result = runner.invoke(app, ["cv", str(sim_cohort), "--config", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "model.pooling.name" in result.output and "train.epochs" in result.output
    result = runner.invoke(app, ["cv", str(sim_cohort), "--config", "no-such-preset"])
    assert result.exit_code == 2 and "cpu-moe-cnn" in result.output


def test_usage_error_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "x"), "--cells-per-patient", "9:2"])
    assert result.exit_code == 2 and "MIN <= MAX" in result.output


@pytest.mark.slow
def test_compare_runs_deep_models_and_baselines_on_the_same_folds(tmp_path: Path, sim_cohort: Path) -> None:
    config = tmp_path / "cmp.yaml"
    config.write_text(
        "kind: compare\nfeatures: {size: 64, n_jobs: 1}\nmethods:\n"
        "  - {name: MOE, config: cpu-moe-cnn, overrides: {image: {size: 32, crop: null}, train: {epochs: 1, stages: "
        "{mlp: {epochs: 2}, moe: {epochs: 1}}}}}\n"
        "  - {name: naive Bayes, baseline: clinical/gnb}\n"
        "  - {name: MI-SVM, baseline: mil/MISVM, data: imgs}\n"
        "  - {name: MI-SVM, baseline: mil/MISVM, data: imgs+attrs}\n"
    )
    result = runner.invoke(
        app,
        [
            "compare",
            str(sim_cohort),
            "--config",
            str(config),
            "--folds",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "k"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"MOE", "naive Bayes", "MI-SVM [imgs]", "MI-SVM [imgs+attrs]"}
    assert summary["methods"]["MOE"]["data"] == "imgs+attrs" and summary["methods"]["naive Bayes"]["data"] == "attrs"
    for method in summary["methods"].values():
        assert set(method["metrics"]) == {
            "balanced_accuracy",
            "roc_auc",
            "sensitivity",
            "specificity",
            "accuracy",
            "macro_f1",
        }
        assert all(set(v) == {"mean", "std"} for v in method["metrics"].values())
    assert "MI-SVM [imgs+attrs]" in result.output  # labels are not eaten as markup
    assert (out / "roc.png").stat().st_size > 1000 and "| naive Bayes | attrs |" in (out / "comparison.md").read_text()
    rows = (out / "comparison.csv").read_text().splitlines()
    assert rows[0].startswith("method,data,balanced_accuracy_mean") and len(rows) == 5
    # every method saw the same test patients in each fold
    import csv as _csv

    folds = {}
    for method_dir in (out / "methods").iterdir():
        for r in _csv.DictReader((method_dir / "predictions.csv").open()):
            folds.setdefault(method_dir.name, set()).add((r["patient"], r["fold"]))
    assert len({frozenset(v) for v in folds.values()}) == 1


@pytest.mark.slow
def test_bench_features_prints_a_ratio(tmp_path: Path, sim_cohort: Path) -> None:
    result = runner.invoke(
        app, ["bench", "features", str(sim_cohort), "--cells", "6", "--jobs", "2", "--cache-dir", str(tmp_path), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "cells/s" in result.output and result.output.strip().splitlines()[-1].startswith("ratio: ")


@pytest.mark.slow
def test_bench_heads_times_a_cv_on_simulated_features() -> None:
    result = runner.invoke(
        app, ["bench", "heads", "--patients", "12", "--cells", "4:8", "--folds", "3", "--head-epochs", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "patients: 12" in result.output and "3-fold CV, attention head" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("ratio: ") and float(last.split()[1]) > 0
