"""Hand-crafted features against known answers; classical MIL on a toy problem; clinical classifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk
from skimage.feature import graycomatrix, graycoprops

from smearmil.baselines import BASELINES
from smearmil.baselines.handcrafted import (
    FEATURE_NAMES,
    GLCM,
    SHAPE,
    average_fractal_dimension,
    cell_features,
    fractal_dimension,
    glcm_statistics,
    region_glcm,
    shape_features,
)
from smearmil.baselines.segmentation import segment
from smearmil.data.images import read_rgb
from smearmil.data.simulate import SimulationConfig, simulate


def test_there_are_94_features() -> None:
    assert len(FEATURE_NAMES) == 94 == 12 + 9 + 72 + 1 and len(set(FEATURE_NAMES)) == 94
    assert len(GLCM) + 1 == 24


def test_shape_of_a_disc() -> None:
    mask = np.zeros((101, 101), bool)
    r = 30
    mask[disk((50, 50), r)] = True
    f = dict(zip(SHAPE, shape_features(mask)))
    assert f["area"] == pytest.approx(np.pi * r**2, rel=0.01)
    assert f["perimeter"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert f["perimeter_crofton"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert f["eccentricity"] < 0.05 and f["solidity"] > 0.98 and f["euler_number"] == 1
    assert f["axis_major_length"] == pytest.approx(2 * r, rel=0.02)
    assert f["extent"] == pytest.approx(np.pi / 4, rel=0.05)  # digital disc: its box is 59 px, not 61
    mask[50, 50] = False  # a hole: Euler number 0, filled area one more than area
    f = dict(zip(SHAPE, shape_features(mask)))
    assert f["euler_number"] == 0 and f["area_filled"] == f["area"] + 1


def test_texture_of_a_flat_region() -> None:
    channel = np.full((20, 20), 120, np.uint8)
    stats = dict(zip(GLCM, glcm_statistics(region_glcm(channel, np.ones((20, 20), bool)))))
    assert stats["energy"] == pytest.approx(1.0) and stats["inverse_difference"] == 0
    assert stats["contrast"] == 0 and stats["dissimilarity"] == 0 and stats["homogeneity_1"] == pytest.approx(1.0)
    assert stats["entropy"] == pytest.approx(0.0, abs=1e-9) and stats["max_probability"] == pytest.approx(1.0)


def test_texture_matches_scikit_image_where_both_define_it() -> None:
    rng = np.random.default_rng(0)
    channel = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    ours = dict(zip(GLCM, glcm_statistics(region_glcm(channel, np.ones((40, 40), bool)))))
    q = (channel.astype(int) * 32 // 256).astype(np.uint8)
    p = graycomatrix(q, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
    for ours_name, sk_name in (
        ("contrast", "contrast"),
        ("dissimilarity", "dissimilarity"),
        ("homogeneity_2", "homogeneity"),
        ("energy", "ASM"),
        ("correlation_1", "correlation"),
        ("correlation_2", "correlation"),
    ):
        assert ours[ours_name] == pytest.approx(graycoprops(p, sk_name).mean(), rel=1e-6), ours_name
    stripes = np.tile(np.array([0, 255], np.uint8), (10, 5))  # alternating columns: contrast at 0 degrees
    p_stripes = region_glcm(stripes, np.ones(stripes.shape, bool))
    assert glcm_statistics(p_stripes[..., :1])[GLCM.index("contrast")] == pytest.approx(31**2)


def test_the_papers_texture_variables_on_a_hand_computed_glcm() -> None:
    """A 2-level GLCM worked out by hand: p = [[0.4, 0.1], [0.1, 0.4]] (levels 1 and 2)."""
    p = np.array([[0.4, 0.1], [0.1, 0.4]])[..., None]
    stats = dict(zip(GLCM, glcm_statistics(p)))
    # marginals 0.5 / 0.5: mean 1.5, variance 0.25; sum i j p = 0.4 + 0.2 + 0.2 + 1.6 = 2.4
    assert stats["correlation_2"] == pytest.approx((2.4 - 1.5**2) / 0.25)  # 0.6
    assert stats["correlation_1"] == pytest.approx((0.4 * 0.25 - 0.1 * 0.25 * 2 + 0.4 * 0.25) / 0.25)  # 0.6
    assert stats["inverse_difference"] == pytest.approx(0.1 / 1 + 0.1 / 1)  # over i != j: p / |i - j|
    assert stats["homogeneity_1"] == pytest.approx(0.8 + 0.2 / 2)  # p / (1 + |i - j|)
    assert stats["homogeneity_2"] == pytest.approx(0.8 + 0.2 / 2)  # p / (1 + (i - j)^2): same at distance 1
    assert stats["energy"] == pytest.approx(2 * 0.16 + 2 * 0.01)
    assert stats["inverse_difference_normalized"] == pytest.approx(0.8 + 0.2 / (1 + 1 / 2))
    assert stats["inverse_difference_moment_normalized"] == pytest.approx(0.8 + 0.2 / (1 + 1 / 4))
    # levels two apart tell the two homogeneities apart, and scale the inverse difference
    q = np.zeros((3, 3))
    q[0, 2] = q[2, 0] = 0.25
    q[1, 1] = 0.5
    stats = dict(zip(GLCM, glcm_statistics(q[..., None])))
    assert stats["homogeneity_1"] == pytest.approx(0.5 + 0.5 / 3) and stats["homogeneity_2"] == pytest.approx(
        0.5 + 0.5 / 5
    )
    assert stats["inverse_difference"] == pytest.approx(0.5 / 2)


def test_fractal_dimension_of_a_square_and_a_line() -> None:
    square = np.ones((64, 64), bool)
    line = np.zeros((64, 64), bool)
    line[32, :] = True
    assert fractal_dimension(square) == pytest.approx(2.0, abs=0.05)
    assert fractal_dimension(line) == pytest.approx(1.0, abs=0.05)


def test_the_fractal_dimension_is_averaged_over_thresholds() -> None:
    """A bright line (dimension 1) over a dimmer half-plane (dimension 2): the lower thresholds keep the
    plane, the upper ones only the line, and the average lies between."""
    channel = np.zeros((64, 64), np.uint8)
    channel[:32] = 100
    channel[48] = 250
    plane, line = fractal_dimension(channel > 0), fractal_dimension(channel > 100)
    assert plane > 1.7 and line == pytest.approx(1.0, abs=0.05)
    assert average_fractal_dimension(channel, np.ones(channel.shape, bool)) == pytest.approx((plane + line) / 2)
    flat = np.full((16, 16), 7, np.uint8)  # no pixel above any threshold
    assert average_fractal_dimension(flat, np.ones(flat.shape, bool)) == 0.0


def test_segmentation_finds_the_simulated_white_cell(tmp_path) -> None:
    root = simulate(tmp_path / "s", SimulationConfig(patients=2, cells_min=3, cells_max=3, size=96), progress=False)
    for path in sorted((root / "trainset").rglob("*.jpg")):
        rgb = read_rgb(path)
        seg = segment(rgb)
        rows, cols = np.nonzero(seg.mask)
        assert abs(rows.mean() - 48) < 12 and abs(cols.mean() - 48) < 12  # the white cell sits in the centre
        assert 0.05 < seg.mask.mean() < 0.5 and seg.count >= 1 and (seg.nucleus <= seg.mask).all()
        features = cell_features(rgb)
        assert features.shape == (94,) and np.isfinite(features).all()


def test_real_cells_are_segmented_whole_and_unfilled(shared_data: Path) -> None:
    """The first cell of 40 patients: the region is the lymphocyte with its cytoplasm (clearly larger than
    its stained nucleus on most cells), and holes are kept, so Euler number and filled area vary."""
    root = shared_data / "lymphocytosis-dev" / "trainset"
    folders = sorted(p for p in root.iterdir() if p.is_dir())[:40]
    cells = [read_rgb(sorted(folder.glob("*.jpg"))[0]) for folder in folders]
    segs = [segment(rgb) for rgb in cells]
    assert all(s.mask.any() and (s.nucleus <= s.mask).all() for s in segs)
    with_cytoplasm = [s.mask.sum() >= 1.15 * s.nucleus.sum() for s in segs]
    assert np.mean(with_cytoplasm) >= 0.75, f"{sum(with_cytoplasm)} of {len(segs)} cells have cytoplasm"
    shapes = np.stack([shape_features(s.mask) for s in segs])
    euler, area, filled = (shapes[:, SHAPE.index(n)] for n in ("euler_number", "area", "area_filled"))
    assert len(np.unique(euler)) >= 2 and (filled > area).any() and (filled >= area).all()


def _toy(n_bags: int, seed: int, shift: float = 5.0, n: int = 10, d: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
    """Positive bags hold one instance shifted along the first axis among negatives."""
    rng = np.random.default_rng(seed)
    bags, labels = [], []
    for i in range(n_bags):
        bag = rng.normal(size=(n, d))
        if i % 2:
            bag[rng.integers(n), 0] += shift
        bags.append(bag)
        labels.append(i % 2)
    return bags, np.array(labels)


# mil/instance pools the mean of cell scores: it assumes many cells carry the label (a collective
# shift, tested in test_experts.py), not one witness per bag as this toy problem does
BAG_BASELINES = [name for name, entry in BASELINES.items() if "imgs" in entry.data and name != "mil/instance"]
ATTRIBUTE_BASELINES = [name for name, entry in BASELINES.items() if entry.data == ("attrs",)]


@pytest.mark.parametrize("name", BAG_BASELINES)
def test_classical_mil_on_a_toy_problem(name: str) -> None:
    train, y_train = _toy(60, seed=1)
    test, y_test = _toy(200, seed=2)
    model = BASELINES.build(name).fit(train, y_train)
    proba = model.predict_proba(test)
    assert proba.shape == (200, 2) and np.allclose(proba.sum(1), 1)
    assert (model.predict(test) == y_test).mean() >= 0.9


def test_specialising_mil_tunes_its_fraction_by_cross_validation() -> None:
    train, y = _toy(60, seed=3)
    model = BASELINES.build("mil/specialising").fit(train, y)
    assert model.eta_ in model.etas and model.eta_ <= 0.2  # one shifted instance in ten


@pytest.mark.parametrize("name", ATTRIBUTE_BASELINES)
def test_clinical_classifiers_follow_the_estimator_api(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    model = BASELINES.build(name, seed=0).fit(x[:60], y[:60])
    assert model.predict_proba(x[60:]).shape == (20, 2)
    assert (model.predict(x[60:]) == y[60:]).mean() >= 0.75


def test_the_svm_baseline_fits_small_folds_and_names_a_class_too_small() -> None:
    from smearmil.baselines.clinical import TooFewPatientsError

    rng = np.random.default_rng(0)
    y = np.array([0, 0, 0, 1, 1, 1])  # 3 patients per class: fewer than its 5 calibration folds
    x = rng.normal(size=(6, 2)) + 2.0 * y[:, None]
    model = BASELINES.build("clinical/svm", seed=0).fit(x, y)
    proba = model.predict_proba(x)
    assert proba.shape == (6, 2) and np.allclose(proba.sum(1), 1) and set(model.predict(x)) <= {0, 1}
    with pytest.raises(TooFewPatientsError, match="at least 2 patients per class.*1 of class 1"):
        BASELINES.build("clinical/svm", seed=0).fit(x[[0, 1, 3]], y[[0, 1, 3]])
    with pytest.raises(TooFewPatientsError, match="two classes"):
        BASELINES.build("clinical/svm", seed=0).fit(x[:3], y[:3])


@pytest.mark.parametrize("name", ["mil/MISVM", "mil/EMDD"])
def test_classical_mil_trains_on_every_instance_unless_capped(name: str) -> None:
    bags, y = _toy(12, seed=4, n=40)
    every = BASELINES.build(name).fit(bags, y)
    assert every.scaler_.n_samples_seen_ == 12 * 40
    capped = BASELINES.build(name, max_instances=8).fit(bags, y)
    assert capped.scaler_.n_samples_seen_ == 12 * 8
    with pytest.raises(ValueError, match="max_instances must be at least 1"):
        BASELINES.build(name, max_instances=0).fit(bags, y)


def test_a_capped_classical_mil_row_says_so() -> None:
    from smearmil.training.config.compare import MethodSpec

    capped = MethodSpec(name="MI-SVM", baseline="mil/MISVM", data="imgs", params={"max_instances": 32})
    assert capped.label == "MI-SVM [imgs, at most 32 cells per bag]"
    both = MethodSpec(name="MI-SVM", baseline="mil/MISVM", params={"max_instances": 32, "calibrate": True})
    assert both.label == "MI-SVM [imgs, at most 32 cells per bag, calibrated]"


def test_emdd_gradient_matches_finite_differences_and_finds_the_witness_axis() -> None:
    from scipy.optimize import check_grad

    from smearmil.baselines.emdd import negative_log_dd

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 4)), np.array([0, 1] * 6)
    theta = rng.normal(size=8)
    error = check_grad(lambda t: negative_log_dd(t, x, y)[0], lambda t: negative_log_dd(t, x, y)[1], theta)
    assert error < 1e-4 * max(1.0, float(np.abs(negative_log_dd(theta, x, y)[1]).max()))
    train, labels = _toy(60, seed=1)
    model = BASELINES.build("mil/EMDD").fit(train, labels)
    assert np.argmax(np.abs(model.scale_)) == 0  # the shifted feature is the one that matters
    assert model.platt_ is None  # uncalibrated unless asked: the paper's 0.5 on raw scores


def test_a_calibrated_classical_mil_row_says_so() -> None:
    from smearmil.training.config.compare import MethodSpec

    plain = MethodSpec(name="MI-SVM", baseline="mil/MISVM", data="imgs")
    calibrated = MethodSpec(name="MI-SVM", baseline="mil/MISVM", data="imgs", params={"calibrate": True})
    assert plain.label == "MI-SVM [imgs]" and calibrated.label == "MI-SVM [imgs, calibrated]"
    train, labels = _toy(40, seed=2)
    assert BASELINES.build("mil/MISVM", calibrate=True).fit(train, labels).platt_ is not None


def test_a_model_fitted_on_older_hand_crafted_features_is_refused(tmp_path: Path) -> None:
    import json

    from smearmil.training.cell_sources import CELLS_META, Featurizer, Handcrafted

    Handcrafted(64, None, 1).save(tmp_path)
    assert Featurizer.load(tmp_path) == Handcrafted(64, None, 1)
    meta = json.loads((tmp_path / CELLS_META).read_text())
    del meta["version"]  # what version 2 wrote
    (tmp_path / CELLS_META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="features of version 2.*train it again"):
        Featurizer.load(tmp_path)


def test_the_histogram_expert_reads_the_mix_of_cell_kinds_and_splits_it_over_the_cells(tmp_path: Path) -> None:
    """Patients differ only in the share of one kind of cell: the mix decides, and each cell's share of
    the score adds up to the patient's score."""
    from sklearn.metrics import roc_auc_score

    from smearmil.baselines.histogram import BagHistogram
    from smearmil.training.experts_fit import cell_contributions

    rng = np.random.default_rng(0)

    def bag(share: float) -> np.ndarray:
        n = int(rng.integers(20, 40))
        odd = rng.random(n) < share
        cells = rng.normal(size=(n, 6))
        cells[odd, :2] += 4.0  # a distinct kind of cell (e.g. large ones)
        return cells

    y = np.array([0, 1] * 20)
    bags = [bag(0.6 if label else 0.1) for label in y]
    model = BagHistogram(clusters=4, axes=2, bins=4, C=1.0).fit(bags[:24], y[:24])
    p = model.predict_proba(bags[24:])[:, 1]
    assert roc_auc_score(y[24:], p) > 0.95
    for b in bags[24:28]:
        parts = cell_contributions(model, b)
        assert parts is not None and parts.shape == (len(b), 1)
        assert np.isclose(parts.sum(), model.decision_function([b])[0])
    assert model.cell_kinds(bags[0]).sum(axis=1).tolist() == [3.0] * len(bags[0])  # a cluster and 2 bins
    from smearmil.training.estimators import load_estimator, save_estimator

    save_estimator(model, tmp_path / "histogram")  # a final model saves and loads (safely) as it was
    assert np.array_equal(
        load_estimator(tmp_path / "histogram").predict_proba(bags[24:]), model.predict_proba(bags[24:])
    )


def test_the_histogram_expert_is_an_image_expert_candidate() -> None:
    from smearmil.training.config.experts import ExpertsConfig

    config = ExpertsConfig.model_validate(
        {
            "kind": "experts",
            "attribute_expert": None,
            "image_expert": [{"name": "mil/histogram", "params": {"clusters": 6}}],
        }
    )
    assert config.image_expert[0].name == "mil/histogram"  # type: ignore[index]
