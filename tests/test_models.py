"""Encoders, model interface, fusion and batched augmentation."""

from __future__ import annotations

import pytest
import torch

from smearmil.models import MODELS, Bags, ModelConfig, ResNetK, build_model
from smearmil.models.base import logits_from_probabilities, probabilities
from smearmil.training.augment import BatchTransform


@pytest.mark.parametrize("k", [1, 3, 8])
def test_resnetk_stage_sizes_and_widths(k: int) -> None:
    net = ResNetK(k, blocks=2, input_size=224)
    x = torch.randn(2, 3, 224, 224)
    sides, widths = [], []
    h = net.stem(x)
    assert h.shape[2] == 56  # conv1 -> 112, max-pool -> 56
    for stage in net.stages:
        h = stage(h)
        sides.append(h.shape[2])
        widths.append(h.shape[1])
    assert sides == [56, 28, 14, 7] and widths == [k, 2 * k, 4 * k, 8 * k]
    assert net(x).shape == (2, 8 * k)
    flat = ResNetK(k, embedding="flatten", input_size=224)
    assert flat(x).shape == (2, 7 * 7 * 8 * k) == (2, flat.out_dim)
    assert ResNetK(k, input_size=64)(torch.randn(1, 3, 64, 64)).shape == (1, 8 * k)


def test_every_conv_is_followed_by_batch_norm_and_relu() -> None:
    block = ResNetK(4).stages[1][0]
    assert isinstance(block.conv1[1], torch.nn.BatchNorm2d) and isinstance(block.conv1[2], torch.nn.ReLU)
    assert isinstance(block.conv2[1], torch.nn.BatchNorm2d)


def _bags(n_classes: int, n_attributes: int = 2) -> Bags:
    torch.manual_seed(0)
    segments = torch.tensor([0, 0, 0, 1, 2, 2])
    return Bags(
        torch.randn(6, 3, 32, 32), segments, 3, torch.randn(3, n_attributes), torch.tensor([0, 1, n_classes - 1])
    )


@pytest.mark.parametrize("kind", MODELS.names())
@pytest.mark.parametrize("n_classes", [2, 4])
def test_models_share_one_interface(kind: str, n_classes: int) -> None:
    config = ModelConfig(kind=kind, encoder={"k": 2}, pooling={"name": "attention", "hidden": 4})
    model = build_model(config, n_classes, 2, 32)
    bags = _bags(n_classes)
    out = model(bags)
    assert out.logits.shape == (3, 1 if n_classes == 2 else n_classes)
    if MODELS.get(kind).uses("images"):
        assert out.weights is not None and out.weights.shape == (6,)
        assert torch.allclose(torch.zeros(3).index_add(0, bags.segments, out.weights), torch.ones(3))
    loss = model.loss(out, bags.labels)
    loss.backward()
    assert torch.isfinite(loss)
    proba = model.predict_proba(bags)
    assert proba.shape == (3, n_classes) and torch.allclose(proba.sum(1), torch.ones(3))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_moe_mixes_the_experts_class_distributions(n_classes: int) -> None:
    model = build_model(ModelConfig(kind="moe", encoder={"k": 2}), n_classes, 2, 32).eval()
    out = model(_bags(n_classes))
    pi = out.extras["gate"][:, None]
    expected = pi * probabilities(out.extras["cnn_logits"], n_classes) + (1 - pi) * probabilities(
        out.extras["mlp_logits"], n_classes
    )
    assert torch.allclose(probabilities(out.logits, n_classes), expected, atol=1e-5)
    # the loss is the negative log-likelihood of the mixture (Eq. 18)
    labels = torch.tensor([0, 1, n_classes - 1])
    nll = -expected[torch.arange(3), labels].log().mean()
    assert torch.isclose(model.loss(out, labels), nll, atol=1e-5)


def test_p2_trains_only_the_gate() -> None:
    model = build_model(ModelConfig(kind="moe", paradigm="P2", encoder={"k": 2}), 2, 2, 32).train()
    model.loss(model(_bags(2)), torch.tensor([0, 1, 1])).backward()
    assert all(p.grad is None for p in [*model.cnn.parameters(), *model.mlp.parameters()])
    assert model.gate.score.weight.grad is not None and not model.cnn.training  # frozen BN statistics


def test_logits_round_trip() -> None:
    p = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    assert torch.allclose(probabilities(logits_from_probabilities(p, 2), 2), p, atol=1e-5)


def _stats() -> dict[str, torch.Tensor]:
    return {
        "mean": torch.full((3, 8, 8), 0.5),
        "std": torch.tensor(0.25),
        "eigvals": torch.tensor([0.001, 0.01, 0.1]),
        "eigvecs": torch.eye(3),
    }


def test_flips_and_rotations_only_move_pixels() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8)
    transform = BatchTransform(_stats(), flips=True, rot90=True, pca_colour_std=0.0)
    out = transform(images, train=True)
    back = out * 0.25 + 0.5
    for a, b in zip(images, back):
        assert torch.allclose(
            torch.sort(a.permute(2, 0, 1).float().flatten() / 255).values, torch.sort(b.flatten()).values, atol=1e-5
        )
    assert not torch.allclose(out, transform(images, train=False))  # something moved
    assert out.is_contiguous()


@pytest.mark.parametrize("flips,rot90,side", [(True, True, 8), (True, False, 8), (False, True, 8), (True, True, 6)])
def test_the_uint8_augmentation_equals_the_float_reference_bit_for_bit(flips: bool, rot90: bool, side: int) -> None:
    stats = {**_stats(), "mean": torch.rand(3, side, side, generator=torch.Generator().manual_seed(2))}
    transform = BatchTransform(stats, flips=flips, rot90=rot90, pca_colour_std=0.1)
    images = torch.randint(0, 256, (40, side, side, 3), dtype=torch.uint8)
    for train in (True, False):
        torch.manual_seed(3)
        fast = transform(images, train=train)
        torch.manual_seed(3)
        assert torch.equal(fast, transform.reference(images, train=train))
    assert transform(images[:0], train=True).shape == (0, 3, side, side)


def test_pca_colour_shifts_each_image_along_the_principal_components() -> None:
    torch.manual_seed(1)
    images = torch.full((2000, 8, 8, 3), 128, dtype=torch.uint8)
    transform = BatchTransform(_stats(), flips=False, rot90=False, pca_colour_std=0.1, mean_centring=False)
    shift = (transform(images, train=True) - transform(images, train=False)) * 0.25
    per_image = shift.mean(dim=(2, 3))
    assert torch.allclose(shift, per_image[:, :, None, None], atol=1e-6)  # one colour shift per image
    expected = 0.1 * torch.tensor([0.001, 0.01, 0.1]).sqrt()  # alpha ~ N(0, 0.1) times sqrt(eigenvalue)
    assert torch.allclose(per_image.std(dim=0), expected, rtol=0.1)
