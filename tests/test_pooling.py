"""Bag pooling on a flat batch: permutation invariance, equality with a per-bag loop, LSE limits, stability."""

from __future__ import annotations

import pytest
import torch

from smearmil.models.specs import POOLINGS, PoolingConfig

NAMES = POOLINGS.names()  # every registered pooling, including ones added later


def pooling(name: str, dim: int = 6, **params: float) -> torch.nn.Module:
    """Pooling ``name`` with those of ``params`` it declares (e.g. LSE's r, attention's hidden units)."""
    declared = POOLINGS.params(name).model_fields
    return PoolingConfig(name=name, **{k: v for k, v in params.items() if k in declared}).build(dim)


def make(name: str, dim: int = 6, r: float = 2.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return pooling(name, dim, r=r, hidden=8).double()


def flat_batch(sizes: list[int], dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), dim, generator=g, dtype=torch.float64) * 3
    segments = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, segments


@pytest.mark.parametrize("name", NAMES)
def test_permutation_invariance(name: str) -> None:
    pool = make(name)
    x, seg = flat_batch([5, 1, 12, 3])
    pooled, weights = pool(x, seg, 4)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    pooled_p, weights_p = pool(x[perm], seg[perm], 4)
    assert torch.allclose(pooled, pooled_p, atol=1e-10)
    assert torch.allclose(weights[perm], weights_p, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_flat_batch_equals_per_bag_loop(name: str) -> None:
    pool = make(name)
    sizes = [7, 1, 30, 2]
    x, seg = flat_batch(sizes)
    pooled, weights = pool(x, seg, len(sizes))
    for b, size in enumerate(sizes):
        cells = x[seg == b]
        single, single_w = pool(cells, torch.zeros(size, dtype=torch.long), 1)
        assert torch.allclose(pooled[b], single[0], atol=1e-10)
        assert torch.allclose(weights[seg == b], single_w, atol=1e-10)
        assert torch.isclose(weights[seg == b].sum(), torch.tensor(1.0, dtype=torch.float64))


def test_pooling_values_match_their_definitions() -> None:
    x, seg = flat_batch([4, 3])
    assert torch.allclose(make("mean")(x, seg, 2)[0][0], x[:4].mean(0))
    assert torch.allclose(make("max")(x, seg, 2)[0][1], x[4:].max(0).values)
    r = 2.0
    expected = (torch.logsumexp(r * x[:4], 0) - torch.log(torch.tensor(4.0, dtype=torch.float64))) / r
    assert torch.allclose(make("lse", r=r)(x, seg, 2)[0][0], expected)


def test_lse_limits_max_and_mean() -> None:
    x, seg = flat_batch([6, 9, 1])
    top = pooling("max")(x, seg, 3)[0]
    mean = pooling("mean")(x, seg, 3)[0]
    assert torch.allclose(pooling("lse", r=1e4)(x, seg, 3)[0], top, atol=1e-3)
    assert torch.allclose(pooling("lse", r=1e-4)(x, seg, 3)[0], mean, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("r", [1e-4, 1.0, 1e4])
def test_no_nan_or_inf_for_tiny_and_huge_bags(name: str, r: float) -> None:
    pool = pooling(name, 16, r=r, hidden=8)  # float32, as in training
    for sizes in ([1], [5000], [1, 5000, 2]):
        x, seg = flat_batch(sizes, dim=16)
        x = (x * 20).float().requires_grad_(True)  # large activations
        pooled, weights = pool(x, seg, len(sizes))
        pooled.sum().backward()
        assert torch.isfinite(pooled).all() and torch.isfinite(weights).all() and torch.isfinite(x.grad).all()
