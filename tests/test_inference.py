"""The fast inference path (batch norm folded, channels-last convolutions) predicts what the model does."""

from __future__ import annotations

import pytest
import torch

from smearmil.models.base import Bags
from smearmil.models.factory import build_model
from smearmil.models.inference import fold_batchnorm, for_inference
from smearmil.training.config import load_config

from .conftest import adam_steps


@pytest.mark.parametrize("name", ["cnn-mean-k8", "cnn-attention-k8", "moe-p1-max-k8", "cpu-cnn"])
def test_the_fast_model_equals_the_plain_one_within_1e_5(name: str) -> None:
    config = load_config(name, {"image": {"size": 64, "crop": None}})
    torch.manual_seed(0)
    model = build_model(config.model, 2, 2, 64)
    model.train()
    with torch.no_grad():  # batch norm with statistics of its own, so that folding has something to fold
        for _ in range(3):
            model(Bags.of(torch.randn(2, 2), [torch.randn(5, 3, 64, 64) * 2 + 0.5 for _ in range(2)]))
    model.eval()
    bags = Bags.of(torch.randn(3, 2), [torch.rand(n, 3, 64, 64) for n in (4, 9, 1)])
    fast = for_inference(model)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules()) == 0
    with torch.no_grad():
        plain, found = model(bags), fast(bags)
    torch.testing.assert_close(found.logits, plain.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(found.weights, plain.weights, atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched


def test_folding_counts_every_conv_bn_pair() -> None:
    config = load_config("cnn-mean-k4", {"image": {"size": 32}})
    encoder = build_model(config.model, 2, 2, 32).encoder.eval()  # type: ignore[union-attr]
    pairs = sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    assert fold_batchnorm(encoder) == pairs > 0


def test_training_in_the_channels_last_layout_follows_the_nchw_run() -> None:
    """Two Adam steps of a ResNet-K MIL model (strided shortcuts included) in either layout."""
    from smearmil.models.encoders import StridedShortcut
    from smearmil.models.inference import use_channels_last

    config = load_config("cnn-mean-k8", {"image": {"size": 32, "crop": None}})
    runs = []
    for layout in ("nchw", "channels_last"):
        torch.manual_seed(0)
        model = build_model(config.model, 2, 2, 32).train()
        if layout == "channels_last":
            use_channels_last(model)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = adam_steps(model, optimiser, steps=2)
        runs.append((torch.stack(losses), model.state_dict()))
    (a, first), (b, second) = runs
    assert any(isinstance(m, StridedShortcut) and m.stride == (2, 2) for m in model.modules())
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name, value in first.items():
        torch.testing.assert_close(second[name], value, atol=1e-4, rtol=1e-4, msg=name)
    assert not torch.equal(a[0], a[1])  # the weights moved between the two steps


def test_a_strided_shortcut_is_a_strided_1x1_convolution() -> None:
    from smearmil.models.encoders import StridedShortcut

    torch.manual_seed(0)
    shortcut, conv = StridedShortcut(4, 6, 1, 2, bias=False), torch.nn.Conv2d(4, 6, 1, 2, bias=False)
    conv.load_state_dict(shortcut.state_dict())
    for side in (7, 8):
        x = torch.randn(3, 4, side, side)
        torch.testing.assert_close(shortcut(x), conv(x))
