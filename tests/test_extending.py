"""CONTRIBUTING.md's recipes hold: a pooling, an SSL method, a data layout, an encoder, a model kind, a
baseline and a whole method, each defined in this file and registered, work through the public config path
like the shipped ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from smearmil.data import DataOptions, load_cohort
from smearmil.data.cache import build_cache
from smearmil.data.cohort import Cohort, Patient
from smearmil.data.images import Preprocessing
from smearmil.data.layouts import LAYOUTS
from smearmil.data.readers.common import list_images
from smearmil.data.splits import make_splits
from smearmil.models.base import Bags, MILModel, MILOutput
from smearmil.models.experts import build_cnn, build_mlp
from smearmil.models.kinds import MODELS, ModelKind, Stage
from smearmil.models.pooling import POOLINGS, Pooling, segment_count, segment_sum
from smearmil.models.specs import ATTRIBUTES, IMAGES, MLPParams
from smearmil.models.ssl_heads import ProjectionHead
from smearmil.training.cell_sources import Handcrafted
from smearmil.training.config import load_config
from smearmil.training.config.components import SSL_METHODS
from smearmil.training.config.ssl import load_ssl_config
from smearmil.training.estimators import load_estimator, save_estimator
from smearmil.training.fit import train_fold
from smearmil.training.methods import METHODS, FitSettings, Method, load_method
from smearmil.training.predictor import Prediction, Predictor
from smearmil.training.ssl.methods import SSLMethod, encode_views
from smearmil.training.ssl.pretrain import CellSource, pretrain
from smearmil.utils.registry import Registry

from .conftest import invoke, write_image
from .test_report import assert_renders


@contextmanager
def registered(registry: Registry[Any], name: str, entry: Any) -> Iterator[Any]:
    """``entry`` under ``name`` for the duration of a test only."""
    registry.register(name)(entry)
    try:
        yield entry
    finally:
        registry.unregister(name)


# --- a pooling with its own hyper-parameter: generalised mean (GeM), p = 1 is the mean --------------------------


class GeMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(3.0, gt=0, description="exponent: 1 is the mean, larger tends to the max")


class GeMPooling(Pooling):
    """(mean over the bag of max(x, eps)^p)^(1/p), feature by feature."""

    Params = GeMParams

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        powered = x.clamp(min=1e-6) ** self.p.p
        counts = segment_count(segments, n_bags).to(x.dtype)
        pooled = (segment_sum(powered, segments, n_bags) / counts[:, None]) ** (1 / self.p.p)
        share = powered / segment_sum(powered, segments, n_bags)[segments]
        return pooled, share.mean(dim=1)


TINY_RUN = {
    "image": {"size": 32, "crop": None},
    "model": {"encoder": {"k": 2}},
    "train": {"epochs": 1, "bags_per_batch": 4, "max_cells_per_bag": 8},
}


def test_a_new_pooling_with_its_own_parameter_trains_and_predicts_through_a_config(
    sim_cohort: Path, tmp_path: Path
) -> None:
    with registered(POOLINGS, "gem", GeMPooling):
        config = load_config(
            "cpu-cnn", {**TINY_RUN, "model": {"encoder": {"k": 2}, "pooling": {"name": "gem", "p": 2.5}}}
        )
        assert config.model.pooling.params.p == 2.5 and "p: 2.5" in config.to_yaml()
        cohort = load_cohort(sim_cohort, progress=False)
        cache = build_cache(cohort, config.image.preprocessing, tmp_path / "cache", progress=False)
        fold = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).folds[0]
        trained = train_fold(cohort, fold, config, tmp_path / "run", cache, progress=False)
        expert = trained.model.image_expert()
        assert expert is not None and isinstance(expert.pooling, GeMPooling) and expert.pooling.p.p == 2.5
        predictions = trained.predict_cohort(cohort, list(fold.test), cache)
        assert len(predictions) == len(fold.test)
        for p in predictions:
            assert np.isclose(p.proba.sum(), 1) and p.weights is not None and np.isclose(p.weights.sum(), 1, atol=1e-5)
        # the saved model reloads with its pooling and parameter
        from smearmil.training.trained import TrainedModel

        again = TrainedModel.load(tmp_path / "run").model.image_expert()
        assert again is not None and again.pooling.p.p == 2.5
        with pytest.raises(ValueError, match="pooling 'gem': q: Extra inputs"):
            load_config("cpu-cnn", {"model": {"pooling": {"name": "gem", "q": 1}}})


def test_a_new_pooling_also_serves_the_heads_on_cached_features(tmp_path: Path) -> None:
    from smearmil.models.feature_mil import FeatureMIL
    from smearmil.training.config.head import load_head_config

    with registered(POOLINGS, "gem", GeMPooling):
        head = load_head_config("gem", {"epochs": 1})
        model = FeatureMIL(8, 3, head.pooling)
        bags = Bags.of(torch.zeros(2, 0), features=[torch.randn(5, 8), torch.randn(3, 8)])
        out = model(bags)
        assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()


# --- an SSL method with its own hyper-parameter: Barlow Twins ------------------------------------------------------


class BarlowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    off_diagonal: float = Field(5e-3, ge=0, description="weight of the redundancy-reduction term")
    out_dim: int = Field(32, ge=1)


class BarlowTwins(SSLMethod):
    """Two views; the cross-correlation of their standardised projections is pushed to the identity."""

    Params = BarlowParams

    def __init__(self, encoder: torch.nn.Module, params: BarlowParams | None = None, n_global: int = 2):
        super().__init__(encoder, params, n_global)
        self.head = ProjectionHead(encoder.out_dim, 64, self.c.out_dim)  # type: ignore[arg-type]

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:
        z1, z2 = (
            (z - z.mean(0)) / (z.std(0) + 1e-5) for z in (self.head(h) for h in encode_views(self.encoder, views[:2]))
        )
        c = z1.T @ z2 / z1.shape[0]
        on = (torch.diagonal(c) - 1).pow(2).sum()
        off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
        return on + self.c.off_diagonal * off


def test_a_new_ssl_method_pretrains_through_a_config_and_its_encoder_embeds(sim_cohort: Path, tmp_path: Path) -> None:
    with registered(SSL_METHODS, "barlow", BarlowTwins):
        overrides = {
            "method": {"name": "barlow", "off_diagonal": 0.01},
            "image": {"size": 32, "crop": None},
            "encoder": {"k": 2},
            "epochs": 1,
            "batch_size": 16,
            "warmup_epochs": 0,
        }
        config = load_ssl_config("cpu-ssl", overrides)
        assert config.method.params.off_diagonal == 0.01 and config.view_config.n_local == 0
        cohort = load_cohort(sim_cohort, progress=False)
        cache = build_cache(cohort, Preprocessing(32), tmp_path / "cache", progress=False)
        encoder = pretrain([CellSource(cache, cohort.ids[:8], "sim")], config, tmp_path / "ssl", progress=False)
        meta = json.loads((tmp_path / "ssl" / "encoder.json").read_text())
        assert meta["method"] == "barlow" and np.isfinite(meta["final_loss"])
        vectors = encoder.embed(cache.bag(cohort.ids[0]))
        assert vectors.shape == (len(cache.rows(cohort.ids[0])), 16) and np.isfinite(vectors).all()
        from smearmil.protocols.ssl_cv import encoder_kinds

        assert "barlow" in encoder_kinds()
        with pytest.raises(ValueError, match="SSL method 'barlow': temperature: Extra inputs"):
            load_ssl_config("cpu-ssl", {"method": {"name": "barlow", "temperature": 0.1}})


# --- a data layout: a manifest.json listing patients, one image folder each ----------------------------------------


class ManifestLayout:
    """``<root>/manifest.json``: ``{"classes": [...], "patients": [{"id", "label", "age"}]}`` and ``<root>/<id>/``."""

    detect_order = 5

    @staticmethod
    def looks_like(root: Path) -> bool:
        return (root / "manifest.json").is_file()

    @staticmethod
    def read(root: Path, options: DataOptions) -> Cohort:
        manifest = json.loads((root / "manifest.json").read_text())
        patients = [
            Patient(p["id"], p["label"], {"age": float(p["age"])}, list_images(root / p["id"]))
            for p in manifest["patients"]
        ]
        return Cohort(root, "manifest", patients, manifest["classes"], ["age"])


def test_a_new_layout_reads_a_tiny_cohort(tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    rows = [("a", "healthy", 40), ("b", "ill", 71), ("c", "ill", 66)]
    for k, (pid, _, _) in enumerate(rows):
        for j in range(2):
            write_image(root / pid / f"{j}.png", seed=10 * k + j, fmt="PNG")
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "classes": ["healthy", "ill"],
                "patients": [{"id": pid, "label": label, "age": age} for pid, label, age in rows],
            }
        )
    )
    with registered(LAYOUTS, "manifest", ManifestLayout):
        for options in (DataOptions(), DataOptions(layout="manifest")):  # detected, and named
            cohort = load_cohort(root, options, progress=False)
            assert cohort.layout == "manifest" and cohort.ids == ["a", "b", "c"]
            assert cohort.class_counts() == {"healthy": 1, "ill": 2} and cohort["b"].attributes["age"] == 71.0
            assert all(p.n_cells == 2 for p in cohort.patients)
    with pytest.raises(ValueError, match="unknown layout 'manifest'"):
        DataOptions(layout="manifest")


def test_every_module_of_a_package_is_imported_so_a_new_file_registers_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smearmil.utils.registry import import_modules

    package = tmp_path / "plugins_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("alpha", "beta", "_private"):
        (package / f"{name}.py").write_text(
            "from smearmil.models.pooling import POOLINGS, MeanPooling\n"
            f"POOLINGS.register('{name}-test')(type('P', (MeanPooling,), {{}}))\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_for_test  # type: ignore[import-not-found]

    try:
        import_modules("plugins_for_test", plugins_for_test.__path__)
        assert {"alpha-test", "beta-test"} <= set(POOLINGS.names()) and "_private-test" not in POOLINGS
    finally:
        for name in ("alpha-test", "beta-test"):
            POOLINGS.unregister(name)


# --- a cell encoder with its own hyper-parameter -------------------------------------------------------------------


class TinyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(4, ge=1)


def tiny_encoder(params: TinyParams, input_size: int) -> torch.nn.Module:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, params.width, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    net.out_dim = params.width  # type: ignore[assignment]
    return net


def test_a_new_encoder_serves_the_cnn_expert_through_a_config() -> None:
    from smearmil.models import ENCODERS, build_model

    ENCODERS.register("tiny", params=TinyParams)(tiny_encoder)
    try:
        config = load_config("cpu-cnn", {"model": {"encoder": {"name": "tiny", "width": 6}}})
        model = build_model(config.model, 2, 0, 32)
        out = model(Bags.of(torch.zeros(2, 0), [torch.randn(3, 3, 32, 32), torch.randn(4, 3, 32, 32)]))
        assert out.logits.shape == (2, 1) and model.image_expert().encoder.out_dim == 6  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="encoder 'tiny': depth: Extra inputs"):
            load_config("cpu-cnn", {"model": {"encoder": {"name": "tiny", "depth": 8}}})
    finally:
        ENCODERS.unregister("tiny")


# --- a model kind: the two experts' logits averaged --------------------------------------------------------------


class LogitAverage(MILModel):
    inputs = frozenset({IMAGES, ATTRIBUTES})

    def __init__(self, cnn: MILModel, mlp: MILModel):
        super().__init__()
        self.n_classes, self.cnn, self.mlp = cnn.n_classes, cnn, mlp

    def image_expert(self) -> Any:
        return self.cnn

    def experts(self) -> dict[str, MILModel]:
        return {"cnn": self.cnn, "mlp": self.mlp}

    def forward(self, bags: Bags) -> MILOutput:
        image, attributes = self.cnn(bags), self.mlp(bags)
        return MILOutput((image.logits + attributes.logits) / 2, image.weights)


class LogitAverageKind(ModelKind):
    model = LogitAverage
    stage_names = ("cnn", "mlp")
    Params = MLPParams  # its MLP expert's hidden units, like the shipped fusion kinds

    def build(self, config: Any, dims: Any) -> MILModel:
        return LogitAverage(build_cnn(config, dims), build_mlp(config, dims))

    def stages(self, config: Any, dims: Any, init: bool = True) -> list[Stage]:
        return [Stage("cnn", 1, lambda _: build_cnn(config, dims)), Stage("mlp", 2, lambda _: build_mlp(config, dims))]

    def assemble(self, trained: dict[str, MILModel], config: Any, dims: Any) -> MILModel:
        return LogitAverage(trained["cnn"], trained["mlp"])


def test_a_new_model_kind_trains_its_stages_and_predicts(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.training.trained import TrainedModel

    with registered(MODELS, "logit-avg", LogitAverageKind):
        config = load_config("cpu-cnn", {**TINY_RUN, "model": {"kind": "logit-avg", "encoder": {"k": 2}}})
        assert config.model.uses_images and config.model.uses_attributes
        cohort = load_cohort(sim_cohort, progress=False)
        cache = build_cache(cohort, config.image.preprocessing, tmp_path / "cache", progress=False)
        fold = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).folds[0]
        trained = train_fold(cohort, fold, config, tmp_path / "run", cache, progress=False)
        assert {p.name for p in (tmp_path / "run").iterdir() if (p / "model.pt").is_file()} == {"cnn", "mlp"}
        assert set(trained.models()) == {"CNN", "MLP", "AVG", "LOGIT-AVG"}
        again = TrainedModel.load(tmp_path / "run").predict_cohort(cohort, list(fold.test), cache)
        first = trained.predict_cohort(cohort, list(fold.test), cache)
        np.testing.assert_allclose([p.proba for p in again], [p.proba for p in first], atol=1e-6)


# --- a baseline --------------------------------------------------------------------------------------------------


def test_a_new_baseline_runs_in_a_comparison(sim_cohort: Path, tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    from smearmil.baselines import BASELINES, Baseline
    from smearmil.protocols.compare import load_compare_config, run_compare
    from smearmil.protocols.cv import CVSettings

    knn = Baseline(lambda seed, **params: KNeighborsClassifier(**params), ("attrs",))
    with registered(BASELINES, "clinical/knn", knn):
        spec = tmp_path / "compare.yaml"
        spec.write_text(
            "kind: compare\nmethods:\n  - {name: kNN, baseline: clinical/knn, params: {n_neighbors: 3}}\n"
            "  - {name: naive Bayes, baseline: clinical/gnb}\n"
        )
        config = load_compare_config(spec)
        cohort = load_cohort(sim_cohort, progress=False)
        result = run_compare(cohort, config, tmp_path / "out", CVSettings(folds=3, progress=False))
        assert result["methods"]["kNN"]["data"] == "attrs" and result["methods"]["kNN"]["metrics"]["roc_auc"]["mean"]
        with pytest.raises(ValueError, match="takes data attrs, not imgs"):
            spec.write_text("kind: compare\nmethods:\n  - {name: kNN, baseline: clinical/knn, data: imgs}\n")
            load_compare_config(spec)


# --- a method: kNN on each patient's mean hand-crafted cell features -----------------------------------------------


class KnnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["knn-mean"] = "knn-mean"
    name: str = "knn-mean"
    seed: int = 0
    data: DataOptions = DataOptions()
    k: int = Field(3, ge=1)
    size: int = 32


class KnnPredictor(Predictor):
    method = "knn-mean"

    def __init__(self, config: KnnConfig, model: Any):
        self.config, self.model = config, model
        self.cells = Handcrafted(config.size, None, 1)
        self.data, self.attributes = config.data, []

    @property
    def preprocessing(self) -> Any:
        return self.cells.preprocessing

    def predict(self, cohort, ids, cache_dir=None, progress=True, subsets=None, explain=True):  # type: ignore[no-untyped-def]
        bags = self.cells.bags(cohort, ids, cache_dir, progress)
        x = np.stack([(bags[i] if subsets is None else bags[i][subsets[i]]).mean(0) for i in ids])
        return [Prediction(i, p) for i, p in zip(ids, self.model.predict_proba(x))]

    def save_files(self, folder: Path) -> dict[str, Any]:
        save_estimator(self.model, folder / "knn")
        return {"config": self.config.model_dump(mode="json")}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Predictor:
        return cls(KnnConfig.model_validate(meta["config"]), load_estimator(folder / "knn"))


class KnnMethod(Method):
    kind = "knn-mean"
    Config = KnnConfig
    predictor = KnnPredictor

    def data_label(self) -> str:
        return "imgs"

    def fit(self, cohort: Cohort, fold: Any, folder: Path, settings: FitSettings) -> Predictor:
        from sklearn.neighbors import KNeighborsClassifier

        train = [*fold.train, *fold.val]
        found = KnnPredictor(self.config, KNeighborsClassifier(self.config.k))
        bags = found.cells.bags(cohort, train, settings.cache_dir, settings.progress)
        found.model.fit(np.stack([bags[i].mean(0) for i in train]), cohort.labels(train))
        found.class_names = list(cohort.class_names)
        return found


def test_a_new_method_cross_validates_trains_predicts_and_reports(sim_cohort: Path, tmp_path: Path) -> None:
    with registered(METHODS, "knn-mean", KnnMethod):
        (tmp_path / "knn.yaml").write_text("kind: knn-mean\nk: 3\n")
        cache = ["--cache-dir", str(tmp_path / "cache"), "-q"]
        cv = json.loads(
            invoke(
                "cv",
                sim_cohort,
                "--config",
                tmp_path / "knn.yaml",
                "--folds",
                "3",
                "--out",
                tmp_path / "cv",
                "--json",
                *cache,
            )
        )
        assert cv["method"] == "knn-mean" and cv["metrics"]["roc_auc"]["mean"] is not None
        invoke("train", sim_cohort, "--config", tmp_path / "knn.yaml", "--all", "--out", tmp_path / "run", *cache)
        for model, out in ((tmp_path / "run", tmp_path / "p"), (tmp_path / "cv", tmp_path / "p-cv")):
            found = json.loads(invoke("predict", model, sim_cohort, "--out", out, "--json", *cache))
            assert found["method"] == "knn-mean" and found["n_patients"] == len(load_cohort(sim_cohort))
        assert found["models"] == "fold0+fold1+fold2"
        invoke("report", tmp_path / "cv", "-q")
        invoke("report", tmp_path / "p", "-q")
        for page in (tmp_path / "cv" / "report.html", tmp_path / "p" / "report.html"):
            assert_renders(page, tmp_path, min_images=1)  # its plots load, no console error
        with pytest.raises(ValueError, match="k: Input should be greater"):
            load_method(tmp_path / "knn.yaml", {"k": 0})
