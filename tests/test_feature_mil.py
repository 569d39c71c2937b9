"""Feature cache and MIL heads on it: multi-class CV, attention on abnormal cells, the CLI, encoder evaluation."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smearmil.data import load_cohort
from smearmil.data.cache import build_cache
from smearmil.data.features import FeatureStore
from smearmil.data.images import Preprocessing
from smearmil.data.simulate import SimulationConfig, read_truth, simulate
from smearmil.models.cell_encoder import CellEncoder, extract_features
from smearmil.models.pooling import POOLINGS
from smearmil.models.specs import EncoderConfig
from smearmil.protocols.cv import CVSettings
from smearmil.protocols.feature_cv import run_head_cv, store_head_cv
from smearmil.training.config.experts import head_on_cells
from smearmil.training.config.ssl import load_ssl_config
from smearmil.training.heads import HeadConfig, balanced_probabilities, predict_head, train_head
from smearmil.training.predictor import Ensemble, load_predictor

from .conftest import run_in_process


def run_cli(*args: object, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return run_in_process(*args)


@pytest.fixture(scope="module")
def four_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureStore]:
    """A simulated 4-class cohort (class 0 normal cells only, classes 1-3 one abnormal kind each), embedded
    by a random encoder."""
    root = tmp_path_factory.mktemp("four") / "cohort"
    simulate(
        root,
        SimulationConfig(patients=80, classes=4, cells_min=12, cells_max=24, size=64, seed=1),
        progress=False,
        workers=1,
    )
    cohort = load_cohort(root, progress=False)
    cache = build_cache(cohort, Preprocessing(64), tmp_path_factory.mktemp("cache"), progress=False)
    encoder = CellEncoder.random(EncoderConfig(k=16), Preprocessing(64))
    return root, extract_features(encoder, cohort, cache, root.parent / "features", progress=False)


def test_the_balanced_sampler_gives_every_class_equal_mass() -> None:
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    p = balanced_probabilities(labels)
    assert p.sum() == pytest.approx(1.0)
    assert [p[labels == c].sum() for c in range(3)] == pytest.approx([1 / 3] * 3)


def test_the_feature_store_keeps_every_cell_with_its_id(four_class: tuple[Path, FeatureStore]) -> None:
    root, store = four_class
    truth = read_truth(root)
    assert sum(len(store.cell_ids(p)) for p in store.patient_ids) == len(truth) == store.features.shape[0]
    pid = store.patient_ids[0]
    assert store.bag(pid).shape == (len(store.cell_ids(pid)), store.dim)
    assert all(cell in truth for cell in store.cell_ids(pid))
    assert store.encoder["method"] == "random"


@pytest.mark.parametrize("pooling", POOLINGS.names())
def test_every_head_trains_on_cached_features_and_predicts_distributions(
    four_class: tuple[Path, FeatureStore], pooling: str
) -> None:
    _, store = four_class
    ids = store.patient_ids
    model = train_head(store, ids[:60], HeadConfig(pooling=pooling, epochs=5), seed=0)
    proba, weights = predict_head(model, store, ids[60:])
    assert proba.shape == (20, 4)
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
    assert [len(w) for w in weights] == [len(store.cell_ids(p)) for p in ids[60:]]


@pytest.mark.slow
def test_attention_mil_on_cached_features_finds_the_abnormal_cells(
    four_class: tuple[Path, FeatureStore], tmp_path: Path
) -> None:
    root, store = four_class
    summary = store_head_cv(store, HeadConfig(), tmp_path, CVSettings(5, progress=False), umap=False).summary
    assert summary["metrics"]["macro_f1"]["mean"] >= 0.9
    assert len(summary["folds"]) == 5 and all("macro_f1" in f for f in summary["folds"])
    assert set(summary["per_class_f1"]) == {"class_0", "class_1", "class_2", "class_3"}
    truth = read_truth(root)
    with (tmp_path / "attention.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["label"] != "class_0"]
    abnormal = [float(r["relative_attention"]) for r in rows if truth[r["cell"]]]
    normal = [float(r["relative_attention"]) for r in rows if not truth[r["cell"]]]
    assert np.mean(abnormal) > 2 * np.mean(normal)
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "predictions.csv").is_file()


@pytest.mark.slow
def test_head_cv_is_reproducible(four_class: tuple[Path, FeatureStore], tmp_path: Path) -> None:
    _, store = four_class
    head = HeadConfig(epochs=3)
    for name in ("a", "b"):
        store_head_cv(store, head, tmp_path / name, CVSettings(3, progress=False), umap=False)
    assert (tmp_path / "a" / "predictions.csv").read_text() == (tmp_path / "b" / "predictions.csv").read_text()


@pytest.mark.slow
def test_features_extract_and_cv_commands(sim_cohort: Path, tmp_path: Path) -> None:
    features = tmp_path / "features"
    done = run_cli(
        "features",
        "extract",
        sim_cohort,
        "--encoder",
        "random:cpu-ssl",
        "--out",
        features,
        "--cache-dir",
        tmp_path / "cache",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((features / "index.json").read_text())
    assert len(index["patients"]) == 12
    done = run_cli(
        "features",
        "cv",
        features,
        "--folds",
        "3",
        "--head-epochs",
        "2",
        "--no-umap",
        "--out",
        tmp_path / "cv",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary == json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert summary["split"] == "test" and len(summary["folds"]) == 3
    assert "macro_f1" in summary["metrics"]
    # its fold predictors read the same features: the folder predicts the store's patients
    done = run_cli("predict", tmp_path / "cv", sim_cohort, "--out", tmp_path / "p", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["n_patients"] == 12
    loose = tmp_path / "new" / "P999"
    shutil.copytree(next(p for p in sim_cohort.rglob("*") if p.is_dir() and any(p.glob("*.jpg"))), loose)
    refused = run_cli("predict", tmp_path / "cv", loose, "--out", tmp_path / "p2")
    text = " ".join(refused.stderr.split())
    assert refused.returncode != 0 and "not in the features" in text and "features train" in text
    done = run_cli("features", "cv", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert done.returncode != 0 and "smearmil features extract" in done.stderr


def write_cell_set(root: Path, per_class: int = 12) -> Path:
    """Single cells of two clearly different colours, in the ``<class>/*.jpg`` + labels.csv layout."""
    rng = np.random.default_rng(0)
    lines = ["file,label"]
    for label, colour in (("red", (200, 60, 60)), ("blue", (60, 60, 200))):
        (root / label).mkdir(parents=True)
        for j in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{j}.jpg")
            lines.append(f"{label}/{j}.jpg,{label}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_ssl_evaluate_prints_exactly_the_documented_json(tmp_path: Path) -> None:
    cells = write_cell_set(tmp_path / "cells")
    done = run_cli(
        "ssl",
        "evaluate",
        "random:cpu-ssl",
        cells,
        "--out",
        tmp_path / "eval",
        "--json",
        "--cache-dir",
        tmp_path / "cache",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"knn_accuracy", "linear_probe_accuracy", "n_train", "n_test"}
    assert result["n_train"] + result["n_test"] == 24
    assert result["knn_accuracy"] == 1.0  # colour alone separates the classes, even without training
    assert (tmp_path / "eval" / "umap.png").stat().st_size > 1000


@pytest.mark.slow
def test_aml_apl_pipeline_reports_macro_f1_per_fold_and_attention_per_cell_type(
    shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cv"
    done = run_cli(
        "ssl",
        "cv",
        shared_data / "aml-apl-dev",
        "--method",
        "simclr",
        "--epochs",
        "1",
        "--folds",
        "3",
        "--head-epochs",
        "10",
        "--no-umap",
        "--out",
        out,
        "--cache-dir",
        tmp_path / "cache",
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [f["fold"] for f in summary["folds"]] == ["fold0", "fold1", "fold2"]
    assert all(0 <= f["macro_f1"] <= 1 for f in summary["folds"])
    by_type = summary["attention_by_cell_type"]
    assert set(by_type) == {"AML", "APL"}
    assert any("Blast" in kind for kind in by_type["AML"])
    assert (out / "attention_by_cell_type.csv").is_file() and (out / "attention_by_cell_type.png").is_file()
    for fold in summary["folds"]:  # each fold's encoder saw its training patients' cells only
        sources = json.loads((out / fold["fold"] / "ssl-simclr" / "encoder.json").read_text())["sources"]
        test = set(json.loads((out / "splits.json").read_text())["folds"][int(fold["fold"][-1])]["test"])
        assert not test & set(sources[0]["patients"])
    ensemble = load_predictor(out)  # the CV keeps its fold predictors: it predicts new patients' images
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    assert all(m.featurizer.reads_images for m in ensemble.members)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_umaps_get_one_panel_per_feature_space(
    four_class: tuple[Path, FeatureStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folds that share an encoder share one embedding; folds with their own encoders (ssl cv) get a panel each."""

    from smearmil.protocols import feature_cv

    root, store = four_class
    panels: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(feature_cv, "umap_embedding", lambda features, seed: features[:, :2])
    monkeypatch.setattr(
        feature_cv, "umap_panels", lambda groups, path, *a: panels.append((Path(path).name, list(groups)))
    )
    head = HeadConfig(epochs=1)
    store_head_cv(store, head, tmp_path / "shared", CVSettings(3, progress=False))
    assert panels == [("umap_cell_type.png", ["all folds"]), ("umap_attention.png", ["all folds"])]

    # a random encoder standardised on each fold's training cells: one feature space per fold
    ssl = load_ssl_config("cpu-ssl", {"image": {"size": 32, "crop": None}, "encoder": {"k": 2}})
    config = head_on_cells("random + head", 0, {"source": "random", "ssl": ssl.model_dump()}, head)
    panels.clear()
    settings = CVSettings(3, progress=False, cache_dir=tmp_path / "cache")
    run_head_cv(load_cohort(root, progress=False), config, tmp_path / "own", settings)
    assert [names for _, names in panels] == [["fold0", "fold1", "fold2"]] * 2


@pytest.mark.slow
def test_ssl_compare_runs_every_encoder_on_the_same_folds(sim_cohort: Path, tmp_path: Path) -> None:
    ssl = tmp_path / "ssl.yaml"
    ssl.write_text(
        "kind: ssl\nbase: cpu-ssl\nimage: {size: 32, crop: null}\nencoder: {k: 4}\nepochs: 1\nbatch_size: 16\n"
    )
    supervised = tmp_path / "supervised.yaml"
    supervised.write_text("base: cpu-attention\ntrain: {epochs: 1, lr_steps: []}\n")
    out = tmp_path / "compare"
    done = run_cli(
        "ssl",
        "compare",
        sim_cohort,
        "--config",
        ssl,
        "--supervised-config",
        supervised,
        "--folds",
        "2",
        "--head-epochs",
        "2",
        "--out",
        out,
        "--cache-dir",
        tmp_path / "cache",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads((out / "summary.json").read_text()) and result["split"] == "test"
    kinds = ["random", "supervised", "simclr", "swav", "dino"]
    assert list(result["encoders"]) == kinds
    assert all(len(r["folds_macro_f1"]) == 2 and 0 <= r["macro_f1"]["mean"] <= 1 for r in result["encoders"].values())
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["encoder"] for r in rows] == kinds
    splits = {k: json.loads((out / k / "splits.json").read_text())["folds"] for k in kinds}
    assert all(splits[k] == splits["random"] for k in kinds), "every encoder sees identical folds"


def test_a_random_encoder_is_standardised_on_the_cells_it_embeds(sim_cohort: Path, tmp_path: Path) -> None:
    import torch

    cohort = load_cohort(sim_cohort, progress=False)
    cache = build_cache(cohort, Preprocessing(32), tmp_path / "cache", progress=False)
    raw = CellEncoder.random(EncoderConfig(k=4), Preprocessing(32))
    fair = raw.calibrated(cache)
    cells = torch.from_numpy(np.concatenate([cache.bag(p) for p in cache.patient_ids]))
    channel_means = fair.prepare(cells).mean(dim=(0, 2, 3))
    assert torch.allclose(channel_means, torch.zeros(3), atol=0.1)
    assert fair.meta["calibrated"] and not raw.meta["calibrated"] and fair.calibrated(cache) is fair
    seen = cache.patient_ids[:3]  # ssl cv calibrates on a fold's training patients only
    theirs = torch.from_numpy(np.concatenate([cache.bag(p) for p in seen]))
    assert torch.allclose(raw.calibrated(cache, seen).prepare(theirs).mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    store = extract_features(raw, cohort, cache, tmp_path / "features", progress=False)
    assert store.encoder["calibrated"] is True
