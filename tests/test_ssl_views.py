"""Batched SSL views: sizes, value range, randomness per view, seeded reproducibility."""

from __future__ import annotations

import torch

from smearmil.training.ssl.views import SSLViews, ViewConfig


def test_multi_crop_views_have_their_sizes_and_stay_in_range() -> None:
    torch.manual_seed(0)
    images = torch.rand(6, 3, 48, 48)
    views = SSLViews(ViewConfig(global_size=40, local_size=16, n_global=2, n_local=3, solarize=0.2))(images)
    assert [tuple(v.shape) for v in views] == [(6, 3, 40, 40)] * 2 + [(6, 3, 16, 16)] * 3
    assert all(v.min() >= 0 and v.max() <= 1 and v.is_contiguous() for v in views)
    assert not torch.allclose(views[0], views[1])  # two different augmentations of the same cells


def test_views_are_reproducible_from_the_seed() -> None:
    images = torch.rand(4, 3, 32, 32)
    make = SSLViews(ViewConfig(global_size=32, n_local=0))
    torch.manual_seed(5)
    a = make(images)
    torch.manual_seed(5)
    b = make(images)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
