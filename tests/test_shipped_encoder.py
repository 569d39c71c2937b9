"""Shipped cell encoders: named, checksummed package data that `cells: {source: pretrained}` and
`features extract --encoder NAME` read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smearmil.models import shipped
from smearmil.models.shipped import DEFAULT_ENCODER, sha256_of, shipped_encoder_dir, shipped_encoders


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights folder holding a random encoder under the default name."""
    from smearmil.models.cell_encoder import CellEncoder, ChannelNormalise
    from smearmil.training.config.ssl import load_ssl_config

    ssl = load_ssl_config("cpu-ssl", {"image": {"size": 32, "crop": None}})
    folder = tmp_path / "weights"
    random = CellEncoder.random(ssl.encoder, ssl.image.preprocessing, 0)
    normalise = ChannelNormalise([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    CellEncoder(random.encoder, normalise, random.preprocessing, random.meta).save(folder / DEFAULT_ENCODER)
    index = {DEFAULT_ENCODER: {"sha256": sha256_of(folder / DEFAULT_ENCODER / "encoder.pt"), "learnt_from": "test"}}
    (folder / "shipped.json").write_text(json.dumps(index))
    monkeypatch.setattr(shipped, "weights_folder", lambda: folder)
    shipped_encoders.cache_clear()
    yield folder
    shipped_encoders.cache_clear()


def test_a_shipped_encoder_is_found_by_name_and_checked(weights: Path) -> None:
    from smearmil.training.trained import load_encoder

    assert shipped_encoder_dir(DEFAULT_ENCODER) == weights / DEFAULT_ENCODER
    assert load_encoder(DEFAULT_ENCODER).dim > 0
    with pytest.raises(ValueError, match="no shipped encoder named 'nope'"):
        shipped_encoder_dir("nope")
    with (weights / DEFAULT_ENCODER / "encoder.pt").open("ab") as handle:
        handle.write(b"x")  # damaged
    with pytest.raises(ValueError, match="checksum is not the shipped one; reinstall smearmil"):
        load_encoder(DEFAULT_ENCODER)


def test_cells_from_the_shipped_encoder_in_an_experts_cv(weights: Path, sim_cohort: Path, tmp_path: Path) -> None:
    from .conftest import invoke

    config = tmp_path / "shipped.yaml"
    config.write_text(
        "kind: experts\nbase: cpu-image\ncells: {source: pretrained}\ninner_folds: 2\n"
        "image_expert: [{name: mil/instance, params: {C: 0.1}}]\n"
    )
    out = tmp_path / "cv"
    invoke("cv", sim_cohort, "--config", config, "--folds", 2, "--out", out, "--cache-dir", tmp_path / "k", "-q")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["roc_auc"]["mean"] is not None


def test_an_unknown_shipped_name_is_refused_when_the_config_is_read(weights: Path) -> None:
    from smearmil.training.config.experts import CellFeatures

    with pytest.raises(ValueError, match=f"no shipped encoder of that name \\(shipped: {DEFAULT_ENCODER}\\)"):
        CellFeatures(source="pretrained", encoder=Path("smearmil-cells-v9"))
    assert CellFeatures(source="pretrained").source == "pretrained"


def test_the_shipped_weights_match_their_checksum_and_learnt_from_no_judged_cell() -> None:
    """The real package data: its checksum holds, and it learnt from neither lymphocytosis-dev (the cohort
    its images-only figures are judged on) nor blood-cells-dev (where its probes are measured)."""
    from smearmil.training.trained import load_encoder

    entry = shipped_encoders()[DEFAULT_ENCODER]
    encoder = load_encoder(DEFAULT_ENCODER)
    assert sha256_of(shipped_encoder_dir(DEFAULT_ENCODER) / "encoder.pt") == entry["sha256"]
    assert {s["data"] for s in encoder.meta["sources"]} == {"lymphocytosis-unlabelled", "aml-apl-dev"}
    assert encoder.dim == 128


def test_the_shipped_encoder_tells_blood_cell_types_apart(shared_data: Path, tmp_path: Path) -> None:
    """kNN on its frozen features of blood-cells-dev (cells it never saw) beats a random encoder's by far."""
    from smearmil.data.validation import load
    from smearmil.evaluation.encoder_probe import cell_features, probe_scores
    from smearmil.models.cell_encoder import CellEncoder
    from smearmil.training.config.ssl import load_ssl_config
    from smearmil.training.trained import load_encoder

    cells = load(shared_data / "blood-cells-dev", progress=False)
    shipped_encoder = load_encoder(DEFAULT_ENCODER)
    ssl = load_ssl_config("cpu-ssl")
    random = CellEncoder.random(ssl.encoder, shipped_encoder.preprocessing, 0)
    scores = {}
    for name, encoder in {"shipped": shipped_encoder, "random": random}.items():
        features, labels = cell_features(encoder, cells, tmp_path / "cache", progress=False)  # type: ignore[arg-type]
        scores[name] = probe_scores(features, labels)["knn_accuracy"]
    assert scores["shipped"] > 0.7 > scores["random"] + 0.15, scores
