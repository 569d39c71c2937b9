"""The SSL losses against their definitions."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from smearmil.training.ssl.losses import DINOLoss, NTXentLoss, SwAVLoss, sinkhorn


def test_nt_xent_equals_a_naive_loop() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    tau = 0.3
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = 5
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numerator = math.exp(float(z[i] @ z[positive]) / tau)
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * n) if k != i)
        losses.append(-math.log(numerator / denominator))
    assert math.isclose(float(NTXentLoss(tau)(z1, z2)), sum(losses) / len(losses), rel_tol=1e-5)


def test_sinkhorn_rows_and_columns_sum_to_their_marginals() -> None:
    torch.manual_seed(1)
    scores = torch.randn(64, 10) * 3
    q = sinkhorn(scores, epsilon=0.5, iterations=50)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-4)
    assert torch.allclose(q.sum(dim=0), torch.full((10,), 64 / 10), atol=1e-3)
    assert (q >= 0).all()


def test_sinkhorn_is_stable_for_large_scores() -> None:
    q = sinkhorn(torch.randn(32, 6) * 50, epsilon=0.05, iterations=3)
    assert torch.isfinite(q).all() and torch.allclose(q.sum(dim=1), torch.ones(32), atol=1e-3)


def test_swav_loss_is_lower_when_views_agree() -> None:
    torch.manual_seed(2)
    a = torch.randn(32, 6) * 5
    agree = SwAVLoss()([a, a + 0.01 * torch.randn_like(a)])
    disagree = SwAVLoss()([a, torch.randn(32, 6) * 5])
    assert agree < disagree


def test_dino_centre_is_an_exponential_moving_average() -> None:
    loss = DINOLoss(dim=4, center_momentum=0.9)
    t1, t2 = torch.ones(3, 4), 3 * torch.ones(3, 4)
    s = [torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)]
    loss(s, [t1, t2])
    assert torch.allclose(loss.center, torch.full((1, 4), 0.1 * 2.0))  # 0.9 * 0 + 0.1 * mean(1, 3)
    loss(s, [t1, t1])
    assert torch.allclose(loss.center, torch.full((1, 4), 0.9 * 0.2 + 0.1 * 1.0))


def test_losses_decrease_when_training_on_an_easy_toy_set() -> None:
    torch.manual_seed(3)
    data = torch.randn(64, 10)
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    criterion = NTXentLoss(0.5)
    first = None
    for _ in range(200):
        v1, v2 = data + 0.1 * torch.randn_like(data), data + 0.1 * torch.randn_like(data)
        loss = criterion(net(v1), net(v2))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0  # from about 4.2 towards its floor (about 1.2 for 64 samples at tau 0.5)
