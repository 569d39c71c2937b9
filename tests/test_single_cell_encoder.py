"""The second paper's supervised baseline: an encoder trained on single-cell labels (a single-cell data set,
or a cohort's cell-type folders), a row of `ssl compare` beside the self-supervised ones."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data.cache import build_cache
from smearmil.data.labelled_cells import from_cell_types
from smearmil.data.validation import load_cohort
from smearmil.models.cell_encoder import CellEncoder
from smearmil.training.cell_classifier import train_cell_encoder
from smearmil.training.config.ssl import load_ssl_config

runner = CliRunner()
SSL = "kind: ssl\nbase: cpu-ssl\nimage: {size: 32, crop: null}\nencoder: {k: 4}\nepochs: 1\nbatch_size: 16\n"


def single_cell_set(sim: Path, root: Path) -> Path:
    """The simulated cells as a single-cell data set: <class>/*.jpg + labels.csv, classes from cell_truth."""
    root.mkdir(parents=True)
    with (sim / "cell_truth.csv").open() as handle, (root / "labels.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label"])
        for row in csv.DictReader(handle):
            label = "abnormal" if row["abnormal"] == "1" else "normal"
            target = root / label / Path(row["file"]).name
            target.parent.mkdir(exist_ok=True)
            shutil.copy(sim / row["file"], target)
            writer.writerow([f"{label}/{target.name}", label])
    return root


def typed_cohort(sim: Path, root: Path) -> Path:
    """The simulated cohort in a patient-folder layout whose sub-folders name each cell's type."""
    truth = {Path(r["file"]).name: r["kind"] for r in csv.DictReader((sim / "cell_truth.csv").open())}
    table = list(csv.DictReader((sim / "trainset" / "trainset_true.csv").open()))
    root.mkdir(parents=True)
    with (root / "patients.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Patient_ID", "Diagnosis"])
        for r in table:
            writer.writerow([r["ID"], ["AML", "APL"][int(r["LABEL"])]])
    for r in table:
        for image in sorted((sim / "trainset" / r["ID"]).glob("*.jpg")):
            target = root / r["ID"] / truth[image.name].title() / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target)
    return root


def test_the_encoder_learns_cell_types_from_a_cohorts_folders(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(typed_cohort(sim_cohort, tmp_path / "typed"), progress=False)
    config = load_ssl_config("cpu-ssl", {"image": {"size": 32, "crop": None}, "encoder": {"k": 4}, "batch_size": 32})
    cache = build_cache(cohort, config.image.preprocessing, tmp_path / "k", progress=False)
    train = cohort.ids[:8]
    cells = from_cell_types(cohort, cache, train)
    assert cells.class_names == ["Large_Nucleolus", "Normal"]  # the simulator's cell kinds
    assert set(cells.cache.rows(cohort.ids[9])).isdisjoint(cells.rows)  # only the given patients' cells
    encoder = train_cell_encoder(cells, config, epochs=6, progress=False)
    assert encoder.meta["method"] == "single-cell" and encoder.meta["classes"] == cells.class_names
    # its embeddings separate the two types of cells it never saw (nearest centroid, balanced accuracy),
    # better than a random encoder of the same shape does
    held = from_cell_types(cohort, cache, cohort.ids[8:], min_cells=1)

    def balanced(model: CellEncoder) -> float:
        seen = model.embed(cache.read(cells.rows))
        centroids = np.stack([seen[cells.labels == c].mean(0) for c in range(2)])
        found = model.embed(cache.read(held.rows))
        nearest = np.argmin(((found[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        return float(np.mean([(nearest[held.labels == c] == c).mean() for c in range(2)]))

    random = CellEncoder.random(config.encoder, config.image.preprocessing, 0).calibrated(cache, train)
    assert balanced(encoder) >= 0.9 > balanced(random)


@pytest.mark.slow
def test_single_cell_is_a_row_of_ssl_compare(sim_cohort: Path, tmp_path: Path) -> None:
    cells = single_cell_set(sim_cohort, tmp_path / "cells")
    data = typed_cohort(sim_cohort, tmp_path / "typed")
    (tmp_path / "ssl.yaml").write_text(SSL)
    args = ["ssl", "compare", data, "--config", tmp_path / "ssl.yaml", "--encoders", "random,single-cell"]
    args += ["--folds", "2", "--head-epochs", "2", "--cache-dir", tmp_path / "k", "--json"]
    for name, extra in (("labels", ["--set", f"cell_labels={cells}"]), ("types", [])):
        result = runner.invoke(app, [str(a) for a in [*args, *extra, "--out", tmp_path / name]])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)
        assert list(found["encoders"]) == ["random", "single-cell"]
        # cells of a separate labelled set: one encoder, so one feature folder for every fold
        kept = "features" if name == "labels" else "fold0/features"
        meta = json.loads((tmp_path / name / "single-cell" / kept / "index.json").read_text())
        source = meta["encoder"]["labels"]
        assert (f"single cells of {cells}" if name == "labels" else "cell-type folders") in source


@pytest.mark.slow
def test_ssl_cv_can_fine_tune_the_encoder_end_to_end(sim_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "ssl.yaml").write_text(SSL)
    (tmp_path / "mil.yaml").write_text("base: cpu-attention\ntrain: {epochs: 1, lr_steps: []}\n")
    args = ["ssl", "cv", sim_cohort, "--method", "simclr", "--config", tmp_path / "ssl.yaml", "--fine-tune"]
    args += ["--supervised-config", tmp_path / "mil.yaml", "--folds", "2", "--out", tmp_path / "cv"]
    result = runner.invoke(app, [str(a) for a in [*args, "--cache-dir", tmp_path / "k", "--json"]])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "fine-tuned end to end" in summary["model"] and len(summary["folds"]) == 2
    for fold in ("fold0", "fold1"):
        model = json.loads((tmp_path / "cv" / fold / "mil" / "model.json").read_text())
        # the MIL model's image encoder started from that fold's own SimCLR encoder, then trained on
        assert model["config"]["model"]["encoder"]["init"] == str(tmp_path / "cv" / fold / "ssl-simclr")
        encoder = json.loads((tmp_path / "cv" / fold / "ssl-simclr" / "encoder.json").read_text())
        train = json.loads((tmp_path / "cv" / "splits.json").read_text())["folds"][int(fold[-1])]["train"]
        assert encoder["method"] == "simclr" and encoder["sources"][0]["patients"] == train  # no test patient


def test_experts_learn_from_a_cell_type_encoder_trained_on_another_data_set(
    sim_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smearmil.protocols.cv import CVSettings, run_cv
    from smearmil.training import cell_sources
    from smearmil.training.config.experts import load_experts_config
    from smearmil.training.methods.feature_experts import ExpertsMethod

    trained_on: list[list[str]] = []

    def recording(cohort, cache, patients, ssl, progress):  # type: ignore[no-untyped-def]
        trained_on.append(list(patients))
        return single_cell_encoder(cohort, cache, patients, ssl, progress)

    single_cell_encoder = cell_sources.single_cell_encoder
    monkeypatch.setattr(cell_sources, "single_cell_encoder", recording)
    cells = single_cell_set(sim_cohort, tmp_path / "cells")
    (tmp_path / "ssl.yaml").write_text(SSL)
    source = {"source": "single-cell", "ssl": str(tmp_path / "ssl.yaml"), "cell_epochs": 2}
    overrides = {"image_expert": "mil/instance", "threshold": "fixed"}

    def cv(data: Path, name: str, **cells_options: object):  # type: ignore[no-untyped-def]
        config = load_experts_config("cpu-image", {**overrides, "cells": {**source, **cells_options}})
        cohort = load_cohort(data, progress=False)
        out = tmp_path / name
        settings = CVSettings(folds=2, cache_dir=tmp_path / "k", progress=False)
        return cohort, run_cv(cohort, ExpertsMethod(config), out, settings)

    # a single-cell data set of none of the cohort's patients: one encoder, trained once, for every fold
    cohort, result = cv(sim_cohort, "shared", cell_labels=str(cells))
    assert trained_on == [[]]
    seen = result.summary["cells_seen_by_encoder"]
    assert all(s == {"source": "single-cell", "learnt_from": f"the cell types of {cells}"} for s in seen.values())
    index = json.loads((tmp_path / "shared" / "features" / "index.json").read_text())
    assert f"single cells of {cells}" in index["encoder"]["labels"]
    assert sorted(p.id for f in result.folds for p in f.predictions) == sorted(cohort.ids)  # every patient, once
    # the cohort's own cell-type folders: one encoder per fold, on its training patients only
    trained_on.clear()
    _, result = cv(typed_cohort(sim_cohort, tmp_path / "typed"), "per-fold")
    splits = json.loads((tmp_path / "per-fold" / "splits.json").read_text())["folds"]
    assert [sorted(t) for t in trained_on] == [sorted([*f["train"], *f["val"]]) for f in splits]
    assert all(not set(t) & set(f["test"]) for t, f in zip(trained_on, splits))
    for f in splits:
        index = json.loads((tmp_path / "per-fold" / f["name"] / "features" / "index.json").read_text())
        assert "cell-type folders" in index["encoder"]["labels"]
    with pytest.raises(ValueError, match="no cell-type folders; give cells.cell_labels"):
        cv(sim_cohort, "untyped")
    assert not (tmp_path / "untyped").exists()  # refused before any work
