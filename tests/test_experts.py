"""Cached-feature experts and their fusion: the estimators, the fusions, the leak-free protocol."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from smearmil.baselines.instance import InstanceLogistic
from smearmil.data.simulate import SimulationConfig, simulate
from smearmil.data.splits import make_splits
from smearmil.data.validation import load_cohort
from smearmil.protocols.cv import CVSettings, run_cv
from smearmil.training import cell_sources
from smearmil.training.config.experts import ExpertsConfig, ExpertSpec, load_experts_config
from smearmil.training.experts_fit import fit_experts
from smearmil.training.late_fusion import FUSIONS
from smearmil.training.methods.feature_experts import ExpertsMethod


@pytest.fixture(scope="module")
def cohort_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("experts") / "cohort"
    return simulate(
        out, SimulationConfig(patients=24, cells_min=6, cells_max=10, size=32, seed=5), progress=False, workers=1
    )


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image and feature cache for the module: the tests' cohorts share their cells."""
    return tmp_path_factory.mktemp("experts-cache")


def _bags(rng: np.random.Generator, n: int, positive: bool) -> np.ndarray:
    cells = rng.normal(size=(n, 5))
    if positive:
        cells[: n // 3, 0] += 2.5  # a third of a positive bag's cells are shifted along one feature
    return cells


def test_instance_logistic_finds_the_cells_that_carry_the_label() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    bags = [_bags(rng, int(rng.integers(10, 40)), bool(t)) for t in y]
    model = InstanceLogistic(C=0.1).fit(bags, y)
    test_y = np.array([0, 1] * 10)
    test = [_bags(rng, 30, bool(t)) for t in test_y]
    assert roc_auc_score(test_y, model.predict_proba(test)[:, 1]) > 0.95
    shifted = np.zeros((1, 5))
    shifted[0, 0] = 3.0
    assert model.cell_scores(shifted)[0] > model.cell_scores(np.zeros((1, 5)))[0]


def _scores(p: np.ndarray) -> np.ndarray:
    return np.log(np.column_stack([1 - p, p]))


def test_avg_averages_scores_and_the_gate_learns_which_expert_to_trust() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    good = np.where(y == 1, 0.9, 0.1)
    noise = rng.uniform(0.05, 0.95, 200)
    scores = {"image": _scores(good), "attributes": _scores(noise)}
    attrs, cells = rng.normal(size=(200, 2)), rng.normal(size=(200, 3))
    avg, _ = FUSIONS.build("avg", None).combine(scores, attrs, cells)
    expected = 1 / (1 + np.exp(-(np.log(good / (1 - good)) + np.log(noise / (1 - noise))) / 2))
    assert np.allclose(avg[:, 1], expected)
    moe = FUSIONS.build("moe", FUSIONS.params("moe")(), seed=0).fit(scores, attrs, cells, y)
    _, details = moe.combine(scores, attrs, cells)
    assert np.mean([d["gate_image_expert"] for d in details]) > 0.8


def test_stacking_chooses_its_penalty_and_weights_the_informative_expert() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    scores = {"image": _scores(np.where(y == 1, 0.8, 0.2)), "attributes": _scores(rng.uniform(0.1, 0.9, 120))}
    stack = FUSIONS.build("stack", FUSIONS.params("stack")(attributes=False), seed=0)
    stack.fit(scores, np.zeros((120, 0)), np.zeros((120, 0)), y)
    chosen = stack.choices()
    assert chosen["C"] in (0.01, 0.1, 1.0, 10.0)
    assert abs(chosen["coefficients"]["image"][0]) > 3 * abs(chosen["coefficients"]["attributes"][0])


def test_experts_configs_are_validated() -> None:
    with pytest.raises(ValueError, match="need a fusion"):
        ExpertsConfig.model_validate({"attribute_expert": "clinical/gnb"})
    with pytest.raises(ValueError, match="does not take clinical attributes"):
        ExpertsConfig.model_validate({"attribute_expert": "mil/instance", "fusion": "avg"})
    with pytest.raises(ValueError, match="unknown fusion"):
        ExpertsConfig.model_validate({"attribute_expert": "clinical/gnb", "fusion": "vote"})
    for preset in ("cpu-image", "cpu-fusion", "cpu-moe"):
        assert load_experts_config(preset).cells.test_cells is False


def test_each_fold_keeps_the_candidate_with_the_best_out_of_fold_score(cohort_path: Path) -> None:
    cohort = load_cohort(cohort_path, progress=False)
    y = dict(zip(cohort.ids, cohort.labels()))
    rng = np.random.default_rng(0)
    table = {pid: rng.normal(size=(12, 4)) + 2.0 * y[pid] for pid in cohort.ids}  # cells that tell the class
    untrained = {"name": "head", "params": {"epochs": 1, "lr": 1e-9}}
    config = ExpertsConfig.model_validate(
        {"image_expert": [untrained, {"name": "mil/instance", "params": {"C": 0.1}}], "attribute_expert": None}
    )
    fitted = fit_experts(cohort, cohort.ids[:18], config, lambda ids: [table[i] for i in ids])
    choice = fitted.chosen["image_expert"]
    assert choice["chosen"] == "mil/instance(C=0.1)"
    assert choice["scores"]["mil/instance(C=0.1)"] > choice["scores"][ExpertSpec.model_validate(untrained).label]
    with pytest.raises(ValueError, match="candidates must differ"):
        ExpertsConfig.model_validate({"image_expert": ["mil/instance", "mil/instance"], "attribute_expert": None})


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([(predicted[y == c] == c).mean() for c in (0, 1)]))


def test_out_of_fold_threshold_is_chosen_on_training_patients_and_cuts_the_predictions(
    cohort_path: Path, tmp_path: Path
) -> None:
    cohort = load_cohort(cohort_path, progress=False)
    config = ExpertsConfig.model_validate(
        {"image_expert": None, "attribute_expert": "clinical/gnb", "threshold": "out_of_fold"}
    )
    result = run_cv(cohort, ExpertsMethod(config), tmp_path / "cv", CVSettings(folds=3, progress=False))
    assert result.summary["threshold"] == ["out_of_fold"]
    plan = json.loads((tmp_path / "cv" / "splits.json").read_text())["folds"]
    predictions = (tmp_path / "cv" / "predictions.csv").read_text().splitlines()[1:]
    for fold, split in zip(result.folds, plan):
        rows = [r.split(",") for r in (tmp_path / "cv" / fold.fold / "training_scores.csv").read_text().splitlines()]
        assert rows[0] == ["patient", "label", f"prob_{cohort.class_names[1]}"]
        assert {r[0] for r in rows[1:]} == set(split["train"]) and not set(split["test"]) & {r[0] for r in rows}
        y = np.array([cohort.class_names.index(r[1]) for r in rows[1:]])
        p1 = np.array([float(r[2]) for r in rows[1:]])
        # the fold's cut is a best one for balanced accuracy on these training scores: no cut does better
        best = max(_balanced_accuracy(y, (p1 >= t).astype(int)) for t in [0.0, *np.unique(p1), 1.01])
        assert _balanced_accuracy(y, (p1 >= fold.threshold).astype(int)) == pytest.approx(best)
        assert _balanced_accuracy(y, (p1 >= fold.threshold).astype(int)) > 0.5  # class 1's column, not class 0's
        lines = [r.split(",") for r in predictions if r.split(",")[1] == fold.fold]
        assert [r[-1] == cohort.class_names[1] for r in lines] == list(fold.proba[:, 1] >= fold.threshold)
    assert len({f.threshold for f in result.folds}) > 1  # chosen per fold, not a constant
    with pytest.raises(ValueError, match="threshold"):
        ExpertsConfig.model_validate({"threshold": "test_folds"})


def _perturbed(cohort, ids):  # type: ignore[no-untyped-def]
    """The cohort with the given patients' labels flipped, attributes changed and cells swapped."""
    other = copy.deepcopy(cohort)
    donors = [p for p in other.ids if p not in ids]
    for k, pid in enumerate(ids):
        patient = other[pid]
        patient.label = [c for c in other.class_names if c != patient.label][0]
        patient.attributes = {name: (v or 0.0) * 3 + 1 for name, v in patient.attributes.items()}
        patient.images = list(other[donors[k % len(donors)]].images)
    return other


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cpu-fusion"])  # its candidates include the moe gate
def test_a_folds_choices_never_depend_on_its_test_patients(
    cohort_path: Path, tmp_path: Path, shared_cache: Path, preset: str
) -> None:
    cohort = load_cohort(cohort_path, progress=False)
    plan = make_splits(cohort, "kfold", folds=2, val=0.0, seed=0)
    candidates = [  # two of the preset's candidates of each expert keep the test quick; selection still runs
        {"name": "mil/instance", "params": {"C": 0.01}},
        {"name": "head", "params": {"pooling": {"name": "mean"}, "epochs": 3}},
    ]
    overrides = {
        "cells": {"size": 32, "n_jobs": 1},
        "image_expert": candidates,
        "attribute_expert": ["clinical/gnb", "clinical/logreg"],
        "inner_folds": 3,
    }
    config = load_experts_config(preset, overrides)
    fold = plan.folds[0]
    other = _perturbed(cohort, list(fold.test))
    cache = shared_cache
    settings = CVSettings(splits=plan, cache_dir=cache, progress=False)
    run_cv(cohort, ExpertsMethod(config), tmp_path / "a", settings)
    run_cv(other, ExpertsMethod(config), tmp_path / "b", settings)
    choices = [json.loads((tmp_path / r / fold.name / "choices.json").read_text()) for r in "ab"]
    assert {"image_expert", "attributes_expert", "threshold"} <= set(choices[0])  # choices were made
    assert choices[0] == choices[1]  # the test patients of fold 0 changed, its choices did not
    # ... while fold 1, which trains on those patients, did change: the comparison can fail
    later = [json.loads((tmp_path / r / plan.folds[1].name / "choices.json").read_text()) for r in "ab"]
    assert later[0] != later[1]


@pytest.mark.slow
@pytest.mark.parametrize("test_cells", [False, True])
def test_the_ssl_step_reads_test_patients_cells_only_when_told(
    cohort_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_cells: bool
) -> None:
    cohort = load_cohort(cohort_path, progress=False)
    plan = make_splits(cohort, "kfold", folds=2, val=0.0, seed=0)
    read: dict[str, set[str]] = {}
    from smearmil.training.ssl import pretrain as pretraining

    real = pretraining.pretrain

    def spy(sources, config, out, progress=True, overwrite=False):  # type: ignore[no-untyped-def]
        read[Path(out).parent.name] = {p for s in sources for p in (s.patients or s.cache.patient_ids)}
        return real(sources, config, out, progress, overwrite)

    monkeypatch.setattr(pretraining, "pretrain", spy)
    ssl = tmp_path / "ssl.yaml"
    ssl.write_text("kind: ssl\nbase: cpu-ssl\nimage: {size: 32, crop: null}\nepochs: 1\nbatch_size: 16\n")
    config = load_experts_config("cpu-image", {"cells": {"source": "ssl", "ssl": str(ssl), "test_cells": test_cells}})
    settings = CVSettings(splits=plan, cache_dir=tmp_path / "c", progress=False)
    summary = run_cv(cohort, ExpertsMethod(config), tmp_path / "cv", settings).summary
    for fold in plan.folds:
        seen = read[fold.name]
        assert set(fold.train) <= seen
        assert bool(seen & set(fold.test)) is test_cells
        assert summary["cells_seen_by_encoder"][fold.name]["test_cells"] is test_cells
    assert ("test patients" in summary["cells_seen_by_encoder"][plan.folds[0].name]["learnt_from"]) is test_cells


def test_an_ssl_source_names_what_the_encoder_saw() -> None:
    config = load_experts_config("cpu-image", {"cells": {"source": "ssl", "extra_data": ["/elsewhere/unlabelled"]}})
    seen = cell_sources.ssl_learnt_from(config.cells.test_cells, config.cells.extra_data)
    assert "/elsewhere/unlabelled" in seen and "test patients" not in seen
    assert "test patients" in cell_sources.ssl_learnt_from(True, [])


def test_seeds_are_parsed_and_checked() -> None:
    from smearmil.protocols.repeated import parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5") == [3, 4, 5]
    for bad in ("", "a", "1,1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


@pytest.mark.slow
def test_cv_with_seeds_summarises_over_seeds_and_folds(cohort_path: Path, tmp_path: Path, shared_cache: Path) -> None:
    from typer.testing import CliRunner

    from smearmil.cli import app

    config = tmp_path / "image.yaml"
    config.write_text(  # a barely trained head: imperfect folds, so the statistics are not all 1.0
        "kind: experts\nbase: cpu-image\ncells: {size: 32, n_jobs: 1}\n"
        "image_expert: {name: head, params: {epochs: 1, lr: 0.0001}}\n"
    )
    out = tmp_path / "cv"
    args = ["cv", str(cohort_path), "--config", str(config), "--folds", "3", "--seeds", "0,1", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(shared_cache), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["split"] == "test" and summary["seeds"] == [0, 1] and set(summary["per_seed"]) == {"0", "1"}
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == [0, 1]  # the resolved config beside it
    per_seed = [json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
    tests = [[f["test"] for f in json.loads((out / f"seed-{s}" / "splits.json").read_text())["folds"]] for s in (0, 1)]
    assert tests[0] != tests[1]  # other seeds, other folds
    values = [f["balanced_accuracy"] for s in per_seed for f in s["folds"]]
    cell = summary["metrics"]["balanced_accuracy"]
    assert len(set(values)) > 1
    assert cell["mean"] == pytest.approx(np.mean(values))
    assert cell["seed_means"] == pytest.approx([s["metrics"]["balanced_accuracy"]["mean"] for s in per_seed])
    assert cell["std_seeds"] == pytest.approx(np.std(cell["seed_means"], ddof=1))
    again = CliRunner().invoke(app, [*args, "--cache-dir", str(shared_cache), "--json"])
    assert json.loads(again.output)["metrics"] == summary["metrics"]  # reproducible


def test_an_ensemble_expert_averages_its_members_log_probabilities(cohort_path: Path) -> None:
    from smearmil.training.experts_fit import build_expert

    cohort = load_cohort(cohort_path, progress=False)
    y = cohort.labels()
    rng = np.random.default_rng(1)
    bags = [rng.normal(size=(8, 4)) + 1.5 * label for label in y]
    members = [{"name": "mil/instance", "params": {"C": 0.01}}, {"name": "mil/instance", "params": {"C": 1.0}}]
    spec = ExpertSpec.model_validate({"name": "ensemble", "params": {"members": members}})
    assert spec.label == "ensemble(mil/instance(C=0.01), mil/instance(C=1.0))" and spec.takes("imgs")
    assert not spec.takes("attrs")
    ensemble = build_expert(spec, 2, seed=0).fit(bags, y)
    alone = [build_expert(ExpertSpec.model_validate(m), 2, seed=0).fit(bags, y).predict_proba(bags) for m in members]
    expected = np.sqrt(alone[0] * alone[1])
    assert ensemble.predict_proba(bags) == pytest.approx(expected / expected.sum(axis=1, keepdims=True))
    for members, error in ((["mil/instance", "clinical/gnb"], "'clinical/gnb' does not take bags"), ([], "members")):
        with pytest.raises(ValueError, match=error):
            ExpertsConfig.model_validate({"image_expert": {"name": "ensemble", "params": {"members": members}}})
    with pytest.raises(ValueError, match="one parameter, members"):
        ExpertSpec.model_validate({"name": "ensemble", "params": {"member": ["mil/instance"]}})
