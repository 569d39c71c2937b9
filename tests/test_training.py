"""Deep MIL end to end on simulated cohorts: the issue's acceptance items, resume after a kill, outputs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from smearmil.data import load_cohort
from smearmil.data.simulate import SimulationConfig, simulate
from smearmil.data.splits import make_splits
from smearmil.data.validation import load_patients
from smearmil.protocols.cv import CVSettings, run_cv
from smearmil.protocols.predict import load_predictor
from smearmil.protocols.runs import evaluate_run, train_run
from smearmil.training.config import load_config
from smearmil.training.methods import method_of

FAST = {"image": {"size": 48, "crop": None}}


def _test_auc(result: dict) -> float:
    return result["splits"]["test"]["metrics"]["roc_auc"]


@pytest.fixture(scope="module")
def image_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("img") / "cohort"
    return simulate(out, SimulationConfig(patients=48, cells_min=10, cells_max=20, size=48, seed=21), progress=False)


@pytest.mark.slow
def test_cpu_cnn_reaches_auc_095_on_held_out_patients(image_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(image_cohort, progress=False)
    config = load_config("cpu-cnn", {**FAST, "train": {"epochs": 12, "lr_steps": [9]}})
    result = train_run(cohort, method_of(config), tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    assert result["splits"]["test"]["n_patients"] >= 9
    assert _test_auc(result) >= 0.95
    # the saved run evaluates to the same numbers, and says its split
    report = evaluate_run(tmp_path / "run", cohort, "test", tmp_path / "cache", progress=False)
    assert report["split"] == "test" and report["metrics"]["roc_auc"] == pytest.approx(_test_auc(result))
    # a raw patient folder: probabilities and one signed contribution per cell
    folder = cohort.patients[0].images[0].parent
    predictor = load_predictor(tmp_path / "run")
    new = load_patients([folder], predictor.data, progress=False)
    [prediction] = predictor.predict(new, new.ids, tmp_path / "cache", progress=False)
    assert prediction.proba.shape == (2,) and prediction.contributions is not None
    assert len(prediction.contributions) == len(cohort.patients[0].images)


@pytest.mark.slow
def test_mlp_matches_logistic_regression_on_the_same_split(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "c", SimulationConfig(patients=160, cells_min=1, cells_max=1, size=16, seed=5), progress=False
    )
    cohort = load_cohort(root, progress=False)
    plan = make_splits(cohort, "holdout", val=0.0, test=0.3, seed=3)
    result = train_run(
        cohort, method_of(load_config("cpu-mlp", {"train": {"epochs": 200}})), tmp_path / "mlp", plan, progress=False
    )
    fold = plan.folds[0]
    x = cohort.attribute_matrix(names=["age", "lymph_count"])
    x[:, 1] = np.log(x[:, 1])
    index = {p: i for i, p in enumerate(cohort.ids)}
    train, test = [index[i] for i in fold.train], [index[i] for i in fold.test]
    y = cohort.labels()
    lr = LogisticRegression().fit(x[train], y[train])
    lr_auc = roc_auc_score(y[test], lr.predict_proba(x[test])[:, 1])
    assert abs(_test_auc(result) - lr_auc) <= 0.03, (_test_auc(result), lr_auc)


@pytest.mark.slow
def test_moe_is_at_least_as_good_as_the_better_expert(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "e",
        SimulationConfig(
            patients=64,
            cells_min=8,
            cells_max=14,
            size=48,
            seed=9,
            scenario="expert-split",
            abnormal_fraction=(0.4, 0.6),
        ),
        progress=False,
    )
    cohort = load_cohort(root, progress=False)
    plan = make_splits(cohort, "holdout", val=0.15, test=0.3, seed=1)
    base = {
        **FAST,
        "train": {
            "epochs": 10,
            "lr_steps": [],
            "stages": {"mlp": {"epochs": 150, "lr": 0.02, "bags_per_batch": 16}, "moe": {"epochs": 15, "lr": 0.003}},
        },
    }
    moe = train_run(
        cohort,
        method_of(load_config("cpu-moe-cnn", {**base, "model": {"paradigm": "P2"}})),
        tmp_path / "moe",
        plan,
        cache_dir=tmp_path / "k",
        progress=False,
    )
    # P2 trains the experts as stages of their own: score them on the same test patients
    from smearmil.training.trained import TrainedModel

    experts = {}
    for stage in ("cnn", "mlp"):
        trained = TrainedModel.load(tmp_path / "moe")
        model = trained.model.cnn if stage == "cnn" else trained.model.mlp  # type: ignore[union-attr]
        trained.model, trained.config = (
            model,
            trained.config.model_copy(update={"model": trained.config.model.model_copy(update={"kind": stage})}),
        )
        from smearmil.data.cache import build_cache
        from smearmil.data.images import Preprocessing

        cache = build_cache(cohort, Preprocessing(48), tmp_path / "k", progress=False)
        ids = list(plan.folds[0].test)
        proba = np.array([p.proba[1] for p in trained.predict_cohort(cohort, ids, cache)])
        experts[stage] = roc_auc_score(cohort.labels(ids), proba)
    assert _test_auc(moe) >= max(experts.values()) - 1e-9, (moe["splits"]["test"], experts)
    assert max(experts.values()) < 1.0  # each expert alone misses some patients
    gates = json.loads((tmp_path / "moe" / "moe" / "stage.json").read_text())
    assert gates["stage"] == "moe"


@pytest.mark.slow
def test_cv_writes_predictions_and_summary(tmp_path: Path, sim_cohort: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    config = load_config(
        "cpu-moe-cnn",
        {
            "image": {"size": 32, "crop": None},
            "train": {"epochs": 1, "stages": {"mlp": {"epochs": 3}, "moe": {"epochs": 1}}},
        },
    )
    summary = run_cv(
        cohort,
        method_of(config),
        tmp_path / "cv",
        CVSettings(folds=3, seed=4, cache_dir=tmp_path / "k", progress=False),
    ).summary
    on_disk = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert {"metrics", "pooled", "wall_seconds"} <= set(on_disk)
    for m in ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy", "macro_f1"):
        assert set(on_disk["metrics"][m]) == {"mean", "std", "ci95"} and m in on_disk["pooled"]
    rows = list(csv.DictReader((tmp_path / "cv" / "predictions.csv").open()))
    assert list(rows[0]) == ["patient", "fold", "label", "prob_reactive", "prob_tumoral", "prediction"]
    assert sorted(r["patient"] for r in rows) == sorted(cohort.ids)  # every patient tested exactly once
    assert (tmp_path / "cv" / "config.yaml").is_file() and (tmp_path / "cv" / "roc.png").is_file()
    assert (tmp_path / "cv" / "fold0" / "experts.csv").read_text().startswith("patient,gate_image_expert")


@pytest.mark.slow
def test_killed_training_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    cohort = simulate(
        tmp_path / "c", SimulationConfig(patients=16, cells_min=24, cells_max=24, size=64, seed=2), progress=False
    )
    config = tmp_path / "slow.yaml"
    config.write_text(
        "base: cpu-cnn\nimage: {size: 96, crop: null}\nmodel: {encoder: {k: 16}}\n"
        "train: {epochs: 4, lr_steps: [], bags_per_batch: 2}\n"
    )
    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("smearmil")
    command = [
        str(exe),
        "train",
        str(cohort),
        "--config",
        str(config),
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "k"),
        "-q",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = run / "cnn" / "logs" / "metrics.csv"
    last = run / "cnn" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "cnn" / "model.pt").exists(), "training finished before it could be killed"
    epoch_at_kill = torch.load(last, weights_only=True)["epoch"]
    assert epoch_at_kill >= 1
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    stage = json.loads((run / "cnn" / "stage.json").read_text())
    assert stage["resumed_from"] and stage["resumed_from"].endswith("last.ckpt")
    logged = {int(r["epoch"]) for r in csv.DictReader(metrics.open()) if r["epoch"]}
    assert max(logged) == 3 and epoch_at_kill in logged
    for ckpt in (run / "cnn" / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # safe loading works for every checkpoint
    torch.load(run / "model.pt", weights_only=True)


@pytest.mark.slow
def test_multi_class_attention_mil_trains_and_reports_macro_f1(tmp_path: Path) -> None:
    root = simulate(
        tmp_path / "m", SimulationConfig(patients=12, cells_min=4, cells_max=6, size=32, classes=3), progress=False
    )
    cohort = load_cohort(root, progress=False)
    small = {"epochs": 1, "max_steps": 0, "val_every_steps": 0, "lr_step_every": 0}  # not the paper's 220,000 steps
    config = load_config("cnn-attention-k4", {"image": {"size": 32}, "train": small})
    summary = run_cv(
        cohort,
        method_of(config),
        tmp_path / "cv",
        CVSettings(folds=2, seed=0, cache_dir=tmp_path / "k", progress=False),
    ).summary
    assert set(summary["per_class_f1"]) == {"class_0", "class_1", "class_2"}
    assert len(summary["confusion_matrix"]) == 3 and summary["metrics"]["macro_f1"]["mean"] is not None


def test_same_seed_same_training(tmp_path: Path, sim_cohort: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    config = load_config(
        "cpu-moe-cnn",
        {
            "image": {"size": 32, "crop": None},
            "model": {"paradigm": "P2"},
            "train": {"epochs": 2, "stages": {"mlp": {"epochs": 3}, "moe": {"epochs": 1}}},
        },
    )
    plan = make_splits(cohort, "holdout", val=0.2, test=0.2, seed=0)
    logs = []
    for name in ("a", "b"):
        train_run(cohort, method_of(config), tmp_path / name, plan, cache_dir=tmp_path / "k", progress=False)
        logs.append([(tmp_path / name / stage / "logs" / "metrics.csv").read_text() for stage in ("cnn", "mlp", "moe")])
    assert logs[0] == logs[1]
    assert (tmp_path / "a" / "predictions.csv").read_text() == (tmp_path / "b" / "predictions.csv").read_text()


def test_a_threshold_chosen_on_validation_patients_is_saved_and_used(tmp_path: Path, sim_cohort: Path) -> None:
    from smearmil.training.fit import train_fold
    from smearmil.training.trained import TrainedModel
    from smearmil.utils.scoring import best_threshold

    cohort = load_cohort(sim_cohort, progress=False)
    config = load_config("cpu-mlp", {"train": {"epochs": 5, "threshold": "validation"}})
    fold = make_splits(cohort, "holdout", val=0.3, test=0.2, seed=0).folds[0]
    trained = train_fold(cohort, fold, config, tmp_path / "run", None, progress=False)
    val = trained.predict_cohort(cohort, list(fold.val), None)
    expected = best_threshold(cohort.labels(list(fold.val)), np.array([p.proba[1] for p in val]))
    assert trained.threshold_source == "validation" and trained.threshold == pytest.approx(expected)
    again = TrainedModel.load(tmp_path / "run")
    assert (again.threshold, again.threshold_source) == (trained.threshold, "validation")


def test_the_grouped_adam_update_gives_the_numbers_of_the_plain_loop() -> None:
    """Training's Adam runs its update grouped (foreach), a speed-up only: 4 steps equal the loop bit for bit."""
    from smearmil.models.factory import build_model
    from smearmil.training.config import load_config
    from smearmil.training.module import MILModule

    from .conftest import adam_steps

    config = load_config("cnn-mean-k8", {"image": {"size": 32, "crop": None}, "train": {"weight_decay": 1e-4}})
    weights = []
    for grouped in (True, False):
        torch.manual_seed(0)
        model = build_model(config.model, 2, 2, 32).train()
        found = MILModule(model, None, config.train).configure_optimizers()
        optimiser = found["optimizer"] if isinstance(found, dict) else found
        assert optimiser.defaults["foreach"] is True
        if not grouped:
            t = config.train
            optimiser = torch.optim.Adam(
                model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, foreach=False
            )
        adam_steps(model, optimiser, steps=4)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    torch.manual_seed(0)
    assert not torch.equal(
        weights[0], torch.cat([p.flatten() for p in build_model(config.model, 2, 2, 32).parameters()])
    )
