"""The paper's rows are the paper: resolved settings against a table of Sahasrabudhe et al. (2021), a
two-step smoke run of each kind at 224 px with Table 1's flatten, Eq. 14 and Eq. 19."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from smearmil.data import load_cohort
from smearmil.data.simulate import SimulationConfig, simulate
from smearmil.models.base import Bags
from smearmil.models.experts import build_cnn, build_mlp
from smearmil.models.fusion import AverageModel
from smearmil.models.kinds import ModelDims
from smearmil.protocols.runs import train_run
from smearmil.training.augment import BatchTransform
from smearmil.training.config import load_config
from smearmil.training.methods import method_of

# what the paper says (Table 1, Section 2.5, Eqs. 14 and 19), field by field of the resolved config
PAPER = {
    "image.size": 224,
    "image.crop": None,
    "train.lr": 1e-4,
    "train.lr_gamma": 0.1,
    "train.lr_step_every": 96_000,
    "train.max_steps": 220_000,
    "train.lr_steps": [],
    "train.select_metric": "loss",
    "train.balance": "none",
    "train.max_cells_per_bag": None,
    "train.mean_centring": True,
    "train.augment.pca_colour_scale": "eigenvalue",
    "train.stages": {},
}
IMAGE_ROWS = {  # the image rows of Tables 2-5: pooling and K from the name
    "cnn-max-k16": ("max", 16),
    "cnn-mean-k32": ("mean", 32),
    "cnn-lse-k64": ("lse", 64),
    "cnn-attention-k32": ("attention", 32),
    "avg-mean-k32": ("mean", 32),
    "moe-p1-k32": ("mean", 32),
    "moe-p2-k64": ("mean", 64),
    "moe-p3-max-k16": ("max", 16),
}


def value(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config.model_dump() if hasattr(config, "model_dump") else config


@pytest.mark.parametrize("name", [*IMAGE_ROWS, "mlp"])
def test_each_paper_preset_resolves_to_the_papers_settings(name: str) -> None:
    config = load_config(name)
    found = {path: value(config, path) for path in PAPER}
    assert found == PAPER
    assert "Section 2.5" in config.notes and "Table 1" in config.notes  # the YAML says what it follows
    if name in IMAGE_ROWS:
        pooling, k = IMAGE_ROWS[name]
        encoder = config.model.encoder
        assert (encoder.name, encoder.params.k, encoder.params.embedding) == ("resnetk", k, "flatten")
        assert config.model.pooling.name == pooling
    if name.startswith("avg"):
        assert config.model.params.average == "scores"  # Eq. 14
    if name.startswith("moe"):
        assert config.model.params.paradigm == f"P{name[5]}"


@pytest.fixture(scope="module")
def cohort_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper") / "cohort"
    return simulate(out, SimulationConfig(patients=8, cells_min=2, cells_max=3, size=224, seed=4), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn-max-k8", "cnn-lse-k8", "cnn-attention-k8", "avg-mean-k8", "moe-p1-k8", "mlp"])
def test_a_two_step_smoke_run_of_each_paper_kind(name: str, cohort_224: Path, tmp_path: Path) -> None:
    cohort = load_cohort(cohort_224, progress=False)
    config = load_config(name, {"train": {"max_steps": 2, "val_every_steps": 1}})
    assert config.image.size == 224
    result = train_run(cohort, method_of(config), tmp_path / "run", cache_dir=tmp_path / "k", progress=False)
    assert result["splits"]["test"]["n_patients"] > 0
    stages = list((tmp_path / "run").glob("*/stage.json"))
    assert stages and all(json.loads(s.read_text())["iterations"] == 2 for s in stages)  # iterations, not epochs


def test_avg_is_the_sigmoid_of_the_mean_of_the_experts_scores() -> None:
    torch.manual_seed(0)
    config = load_config("avg-mean-k4", {"image": {"size": 32}})
    dims = ModelDims(2, 2, 32)
    cnn, mlp = build_cnn(config.model, dims).eval(), build_mlp(config.model, dims).eval()
    bags = Bags.of(torch.randn(3, 2), [torch.randn(n, 3, 32, 32) for n in (2, 5, 3)])
    with torch.no_grad():
        s_cnn, s_mlp = cnn(bags).logits[:, 0], mlp(bags).logits[:, 0]
        p = torch.sigmoid(AverageModel(cnn, mlp)(bags).logits[:, 0])  # the default: Eq. 14, scores
        p_prob = torch.sigmoid(AverageModel(cnn, mlp, "probabilities")(bags).logits[:, 0])  # the option
    torch.testing.assert_close(p, torch.sigmoid((s_cnn + s_mlp) / 2))
    torch.testing.assert_close(p_prob, (torch.sigmoid(s_cnn) + torch.sigmoid(s_mlp)) / 2, atol=1e-5, rtol=0)
    assert not torch.allclose(p, p_prob)  # the two readings differ


@pytest.mark.parametrize("scale", ["eigenvalue", "sqrt_eigenvalue"])
def test_pca_colour_shift_follows_eq_19_or_the_alexnet_variant(scale: str) -> None:
    eigvecs = torch.linalg.qr(torch.randn(3, 3))[0]
    stats = {"mean": torch.zeros(3, 4, 4), "std": torch.tensor(1.0), "eigvals": torch.tensor([0.01, 0.04, 0.5])}
    stats["eigvecs"] = eigvecs
    transform = BatchTransform(stats, flips=False, rot90=False, pca_colour_std=0.1, pca_colour_scale=scale)
    images = torch.full((5, 4, 4, 3), 128, dtype=torch.uint8)
    torch.manual_seed(3)
    shifted = transform(images, train=True) - transform(images, train=False)
    torch.manual_seed(3)
    alpha = torch.randn(5, 3) * 0.1
    weight = stats["eigvals"] if scale == "eigenvalue" else stats["eigvals"].sqrt()
    expected = (alpha * weight) @ eigvecs.T  # sum_i e_i alpha_i lambda_i (Eq. 19), or with sqrt(lambda_i)
    torch.testing.assert_close(shifted[:, :, 0, 0], expected)


def test_the_learning_rate_decays_every_n_iterations() -> None:
    from smearmil.models.experts import MLPModel
    from smearmil.training.config import TrainConfig
    from smearmil.training.fit import iteration_schedule
    from smearmil.training.module import MILModule

    train = TrainConfig(lr=1e-4, lr_gamma=0.1, lr_step_every=3, max_steps=7, val_every_steps=2)
    found = MILModule(MLPModel(2, 2, 2), None, train).configure_optimizers()
    optimizer, scheduler = found["optimizer"], found["lr_scheduler"]
    assert scheduler["interval"] == "step"  # stepped every iteration, not every epoch
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler["scheduler"].step()
    assert rates == pytest.approx([1e-4] * 3 + [1e-5] * 3 + [1e-6])
    # 7 iterations of 2 a epoch: 4 whole epochs, validated every epoch (every 2 iterations)
    assert iteration_schedule(train, steps_per_epoch=2) == (4, {"check_val_every_n_epoch": 1})
    assert iteration_schedule(TrainConfig(max_steps=220_000, val_every_steps=1_000), 10) == (
        22_000,
        {"check_val_every_n_epoch": 100},
    )


@pytest.mark.parametrize(
    ("name", "method"), [("ssl-simclr-r18", "simclr"), ("ssl-swav-r18", "swav"), ("ssl-dino-r18", "dino")]
)
def test_resnet18_ssl_presets_for_gpus(name: str, method: str) -> None:
    from smearmil.training.config.ssl import load_ssl_config

    config = load_ssl_config(name)
    assert (config.method.name, config.encoder.name, config.image.size) == (method, "resnet18", 224)
    assert config.precision == "16-mixed"
    assert config.encoder.build(224).out_dim == 512  # ResNet18's 512-d features


def test_a_schedule_in_iterations_resumes_exactly(sim_cohort: Path, tmp_path: Path) -> None:
    """Killed between epochs (here: stopped after 4 of 6 iterations, its finished-stage files removed), a
    run on a schedule in iterations resumes from its last checkpoint to the uninterrupted run's weights."""
    from smearmil.data.splits import make_splits
    from smearmil.training.fit import train_fold

    cohort = load_cohort(sim_cohort, progress=False)
    fold = make_splits(cohort, "holdout", val=0.2, test=0.2, seed=0).folds[0]
    assert -(-len(fold.train) // 4) == 2  # 2 iterations an epoch at 4 bags an iteration

    def run(out: Path, steps: int) -> dict[str, torch.Tensor]:
        train = {"max_steps": steps, "lr_step_every": 3, "val_every_steps": 3, "bags_per_batch": 4}
        config = load_config("cpu-mlp", {"train": train})
        return train_fold(cohort, fold, config, out, None, progress=False).model.state_dict()

    whole = run(tmp_path / "whole", 6)
    run(tmp_path / "killed", 4)
    (tmp_path / "killed" / "mlp" / "model.pt").unlink()  # as if killed before the stage finished
    resumed = run(tmp_path / "killed", 6)
    assert json.loads((tmp_path / "killed" / "mlp" / "stage.json").read_text())["resumed_from"]
    for name, tensor in whole.items():
        torch.testing.assert_close(resumed[name], tensor)


def test_the_paper_rows_gate_is_eq_15_and_the_projected_gate_stays_an_option() -> None:
    from smearmil.models import build_model

    paper = load_config("moe-p1-k8").model
    assert paper.params.gate == "paper" and load_config("cpu-moe-cnn").model.params.gate == "projected"
    model = build_model(paper, n_classes=2, n_attributes=2, input_size=32)
    gate = model.gate  # sigma(theta_G . [theta_A . p, a, c]): theta_A gives one number, no biases
    assert gate.project.out_features == 1 and gate.project.bias is None and gate.score.bias is None
    assert gate.score.in_features == 3
    bags = Bags(torch.rand(5, 3, 32, 32), torch.tensor([0, 0, 1, 1, 1]), 2, torch.rand(2, 2))
    pi = model(bags).extras["gate"]
    assert pi.shape == (2,) and bool(((pi > 0) & (pi < 1)).all())
