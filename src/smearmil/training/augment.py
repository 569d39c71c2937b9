"""Batched image transforms on the device: flips, 90-degree rotations, PCA colour, mean centring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.cache import ImageCache


def pixel_statistics(
    cache: ImageCache, ids: Sequence[str], max_cells: int = 4000, seed: int = 0, chunk: int = 128
) -> dict[str, torch.Tensor]:
    """Per-pixel mean image, global std and RGB principal components of the training cells (in [0, 1]).

    Computed in one streaming pass over chunks of ``chunk`` cells with float64 sums, so memory does not
    grow with the number of cells (at most ``max_cells``, drawn at random, are used).
    """
    rows = np.concatenate([np.asarray(cache.rows(i)) for i in ids])
    rng = np.random.default_rng(seed)
    if rows.size > max_cells:
        rows = np.sort(rng.choice(rows, max_cells, replace=False))
    side = cache.shape[1]
    total = np.zeros((side, side, 3))  # per-pixel sums
    squares = 0.0  # sum of every squared value
    rgb = np.zeros(3)  # channel sums over all pixels
    outer = np.zeros((3, 3))  # sums of the products of channels over all pixels
    for start in range(0, rows.size, chunk):
        cells = cache.read(rows[start : start + chunk]).astype(np.float64) / 255.0  # (c, H, W, 3)
        total += cells.sum(axis=0)
        squares += float(np.square(cells).sum())
        pixels = cells.reshape(-1, 3)
        rgb += pixels.sum(axis=0)
        outer += pixels.T @ pixels
    n = max(1, rows.size)
    mean = total / n
    values = n * mean.size
    std = np.sqrt(max(squares - n * float(np.square(mean).sum()), 0.0) / max(1, values))
    n_pixels = max(2, n * side * side)
    centre = rgb / n_pixels
    covariance = (outer - n_pixels * np.outer(centre, centre)) / (n_pixels - 1)
    eigvals, eigvecs = np.linalg.eigh(covariance)
    return {
        "mean": torch.from_numpy(np.ascontiguousarray(mean.transpose(2, 0, 1), dtype=np.float32)),
        "std": torch.tensor(float(std) or 1.0),
        "eigvals": torch.from_numpy(np.clip(eigvals, 0, None).astype(np.float32)),
        "eigvecs": torch.from_numpy(eigvecs.astype(np.float32)),
    }


def random_rot90(x: torch.Tensor) -> torch.Tensor:
    """Each image of (N, C, H, W) turned by a random multiple of 90 degrees (square images)."""
    turns = torch.randint(0, 4, (x.shape[0],), device=x.device)
    out = x.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            out[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
    return out


class BatchTransform(nn.Module):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W): augment when training, then centre on the training mean."""

    mean: torch.Tensor
    std: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor

    def __init__(
        self,
        stats: dict[str, torch.Tensor],
        flips: bool = True,
        rot90: bool = True,
        pca_colour_std: float = 0.1,
        mean_centring: bool = True,
        pca_colour_scale: str = "sqrt_eigenvalue",
    ):
        super().__init__()
        for name in ("mean", "std", "eigvals", "eigvecs"):
            self.register_buffer(name, stats[name].float().clone())
        self.flips, self.rot90, self.pca_colour_std, self.mean_centring = flips, rot90, pca_colour_std, mean_centring
        self.pca_colour_scale = pca_colour_scale

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flips:
            x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
            x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(2), x)
        if self.rot90 and x.shape[2] == x.shape[3]:
            x = random_rot90(x)
        if self.pca_colour_std > 0:  # lighting noise along the RGB principal components
            alpha = torch.randn(n, 3, device=x.device) * self.pca_colour_std
            scale = self.eigvals if self.pca_colour_scale == "eigenvalue" else self.eigvals.sqrt()
            shift = (alpha * scale) @ self.eigvecs.T  # (n, 3): sum_i e_i alpha_i scale_i
            x = x + shift[:, :, None, None]
        return x

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        # contiguous: conv backward on channels-last input crashes the torch 2.13 CPU build
        x = images.permute(0, 3, 1, 2).contiguous().float() / 255.0
        if train:
            x = self.augment(x)
        if self.mean_centring:
            return (x - self.mean) / self.std
        return (x - 0.5) / 0.25
