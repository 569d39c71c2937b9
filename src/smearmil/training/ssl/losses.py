"""Self-supervised losses as small modules (in the spirit of lightly's)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class NTXentLoss(nn.Module):
    """SimCLR's normalised temperature-scaled cross entropy over two views of a batch.

    For 2N embeddings, the positive of view-1 sample i is view-2 sample i; the other 2N - 2 are negatives.
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        logits = z @ z.T / self.temperature
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        return F.cross_entropy(logits, targets)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp: soft assignments of B samples to K prototypes with equal prototype mass.

    Returns (B, K) codes whose rows sum to 1 and whose columns sum to B / K. Computed in the log
    domain, so large scores do not underflow to zero rows.
    """
    log_q = (scores.float() / epsilon).T  # (K, B)
    k, b = log_q.shape
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(b)
    return (log_q + math.log(b)).exp().T


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

    The centre is an exponential moving average of the teacher's outputs (momentum ``center_momentum``).
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
        batch_center = teacher_output.mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
