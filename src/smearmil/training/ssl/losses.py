"""Self-supervised losses as small modules (in the spirit of lightly's)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ...utils.distributed import all_reduce_max, all_reduce_sum, gather_with_gradient, rank, world_size


class NTXentLoss(nn.Module):
    """SimCLR's normalised temperature-scaled cross entropy over two views of a batch.

    For 2N embeddings, the positive of view-1 sample i is view-2 sample i; the other 2N - 2 are negatives.
    With several processes, N counts every process's batch: each process scores its own rows against
    everyone's embeddings (gathered with their gradients), so the mean of the processes' losses is the loss
    of one process on the concatenated batch, and so are the gradients DDP averages.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        everyone = torch.cat([gather_with_gradient(z1), gather_with_gradient(z2)])  # (2N, d), view 1 first
        total = everyone.shape[0] // 2
        mine = torch.arange(n, device=z1.device) + (rank() * n if world_size() > 1 else 0)
        own = torch.cat([mine, mine + total])  # where each of this process's rows sits among everyone's
        logits = torch.cat([z1, z2]) @ everyone.T / self.temperature
        logits = logits.scatter(1, own[:, None], float("-inf"))
        return F.cross_entropy(logits, torch.cat([mine + total, mine]))


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp: soft assignments of B samples to K prototypes with equal prototype mass.

    Returns (B, K) codes whose rows sum to 1 and whose columns sum to B / K. Computed in the log
    domain, so large scores do not underflow to zero rows. With several processes, B and the sums over
    samples run over every process's rows (all-reduced), as if one process held the whole batch.
    """
    log_q = (scores.float() / epsilon).T  # (K, B)
    k = log_q.shape[0]
    b = int(all_reduce_sum(torch.tensor(float(log_q.shape[1]), device=log_q.device)).item())
    for _ in range(iterations):
        log_q = log_q - _logsumexp_over_samples(log_q) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(b)
    return (log_q + math.log(b)).exp().T


def _logsumexp_over_samples(log_q: torch.Tensor) -> torch.Tensor:
    """logsumexp over dim 1 (the samples) of every process's columns, stable: max first, then the sum."""
    if world_size() == 1:
        return torch.logsumexp(log_q, dim=1, keepdim=True)
    top = all_reduce_max(log_q.max(dim=1, keepdim=True).values)
    return top + all_reduce_sum(torch.exp(log_q - top).sum(dim=1, keepdim=True)).log()


class SwAVLoss(nn.Module):
    """Swapped prediction: the codes of one view are predicted from the prototype scores of the others."""

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, iterations: int = 3):
        super().__init__()
        self.temperature, self.epsilon, self.iterations = temperature, epsilon, iterations

    def forward(self, scores: list[torch.Tensor], n_global: int = 2, queue: torch.Tensor | None = None) -> torch.Tensor:
        """``scores``: prototype scores of each view (global views first); ``queue``: extra scores
        of earlier batches used only to stabilise the codes."""
        total, terms = scores[0].new_zeros(()), 0
        for i in range(n_global):
            s = scores[i].detach()
            if queue is not None:
                s = torch.cat([s, queue])
            codes = sinkhorn(s, self.epsilon, self.iterations)[: scores[i].shape[0]]
            for j, other in enumerate(scores):
                if j == i:
                    continue
                total = total - (codes * F.log_softmax(other / self.temperature, dim=1)).sum(dim=1).mean()
                terms += 1
        return total / max(terms, 1)


class DINOLoss(nn.Module):
    """DINO: cross entropy between the centred, sharpened teacher and the student, across views.

    The centre is an exponential moving average of the teacher's outputs (momentum ``center_momentum``),
    averaged over every process's batch.
    """

    center: torch.Tensor

    def __init__(
        self,
        dim: int,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        center_momentum: float = 0.9,
    ):
        super().__init__()
        self.student_temperature, self.teacher_temperature = student_temperature, teacher_temperature
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, dim))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """``teacher``: outputs for the global views; ``student``: for all views (global ones first)."""
        targets = [F.softmax((t.detach() - self.center) / self.teacher_temperature, dim=1) for t in teacher]
        total, terms = student[0].new_zeros(()), 0
        for i, target in enumerate(targets):
            for j, s in enumerate(student):
                if i == j:
                    continue
                total = total - (target * F.log_softmax(s / self.student_temperature, dim=1)).sum(dim=1).mean()
                terms += 1
        self.update_center(torch.cat(teacher).detach())
        return total / max(terms, 1)

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        rows = all_reduce_sum(torch.tensor(float(teacher_output.shape[0]), device=teacher_output.device))
        batch_center = all_reduce_sum(teacher_output.sum(dim=0, keepdim=True)) / rows
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
