"""Contributions find the abnormal cells of a simulated cohort; saliency and galleries work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from smearmil.data import load_cohort
from smearmil.data.cache import build_cache
from smearmil.data.images import Preprocessing
from smearmil.data.simulate import SimulationConfig, read_truth, simulate
from smearmil.explain.gallery import explain_patient, gallery_png
from smearmil.models import POOLINGS, ModelConfig, build_model
from smearmil.models.contributions import cell_contributions
from smearmil.protocols.runs import train_run
from smearmil.training.config import load_config
from smearmil.training.methods import method_of
from smearmil.training.trained import TrainedModel


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("explain")
    root = simulate(
        base / "cohort", SimulationConfig(patients=48, cells_min=10, cells_max=20, size=48, seed=31), progress=False
    )
    cohort = load_cohort(root, progress=False)
    config = load_config("cpu-cnn", {"image": {"size": 48, "crop": None}, "train": {"epochs": 12, "lr_steps": [9]}})
    train_run(cohort, method_of(config), base / "run", cache_dir=base / "cache", progress=False)
    return root, base / "run", base / "cache"


@pytest.mark.slow
def test_contributions_rank_abnormal_cells_first(trained_run: tuple[Path, Path, Path]) -> None:
    root, run, cache_dir = trained_run
    cohort = load_cohort(root, progress=False)
    trained = TrainedModel.load(run)
    cache = build_cache(cohort, Preprocessing(48), cache_dir, progress=False)
    truth = read_truth(root)
    scores, labels = [], []
    for patient in cohort.patients:
        if patient.label != "tumoral":
            continue  # only diseased bags hold abnormal cells
        images = trained.transform(torch.from_numpy(np.array(cache.bag(patient.id))), train=False)
        scores += cell_contributions(trained.model, images).tolist()
        labels += [truth[c] for c in cache.cell_ids(patient.id)]
    assert roc_auc_score(labels, scores) >= 0.8


@pytest.mark.parametrize("pooling", POOLINGS.names())
def test_contributions_exist_for_every_pooling(pooling: str) -> None:
    small = {"hidden": 4} if "hidden" in POOLINGS.params(pooling).model_fields else {}
    model = build_model(ModelConfig(encoder={"k": 2}, pooling={"name": pooling, **small}), 2, 0, 32).eval()
    images = torch.randn(5, 3, 32, 32)
    out = cell_contributions(model, images)
    assert out.shape == (5,) and np.isfinite(out).all()
    if pooling == "mean":  # the shares add up to the logit minus the bias
        from smearmil.models.base import Bags

        logit = model(Bags.of(torch.zeros(1, 0), [images])).logits[0, 0]
        assert out.sum() == pytest.approx(float((logit - model.classifier.bias[0]).detach()), abs=1e-5)


@pytest.mark.slow
def test_saliency_and_gallery(trained_run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, run, cache_dir = trained_run
    cohort = load_cohort(root, progress=False)
    trained = TrainedModel.load(run)
    cache = build_cache(cohort, Preprocessing(48), cache_dir, progress=False)
    pid = cohort.ids[0]
    explanation = explain_patient(trained, pid, cache.bag(pid), cache.cell_ids(pid), np.zeros(0, np.float32), k=2)
    n = len(cache.rows(pid))
    assert explanation.contributions.shape == (n,) and len(explanation.shown) == min(n, 4)
    assert explanation.saliency.shape == (len(explanation.shown), 48, 48) and (explanation.saliency >= 0).all()
    assert explanation.saliency.sum() > 0
    path = gallery_png(explanation, tmp_path / "g.png", k=4)
    assert path.stat().st_size > 5000


def test_multi_class_contributions_explain_the_class_against_the_others() -> None:
    """With a soft-max the score explained is z_c minus the mean logit: mean pooling decomposes it exactly."""
    from smearmil.models.contributions import feature_contributions
    from smearmil.models.feature_mil import FeatureMIL
    from smearmil.models.specs import PoolingConfig

    torch.manual_seed(0)
    model = FeatureMIL(6, 3, PoolingConfig(name="mean"), embed_dim=5, dropout=0.0).eval()
    features = torch.randn(7, 6)
    with torch.no_grad():
        h = model.project((features - model.mean) / model.std)
        z = model.classifier(h.mean(0, keepdim=True))[0]
    for c in range(3):
        found = feature_contributions(model, features, target=c)
        b = model.classifier.bias.detach()
        expected = float((z[c] - z.mean()) - (b[c] - b.mean()))
        assert abs(found.sum() - expected) < 1e-5
    # adding the same vector to every class's weights changes neither the soft-max nor the contributions
    before = feature_contributions(model, features, target=1)
    with torch.no_grad():
        model.classifier.weight += torch.randn(1, 5)
    np.testing.assert_allclose(feature_contributions(model, features, target=1), before, atol=1e-5)
