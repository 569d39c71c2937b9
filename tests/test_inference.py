"""The fast inference path (batch norm folded, channels-last convolutions) predicts what the model does."""

from __future__ import annotations

import pytest
import torch

from smearmil.models.base import Bags
from smearmil.models.factory import build_model
from smearmil.models.inference import fold_batchnorm, for_inference
from smearmil.training.config import load_config


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
