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


def random_rot90(x: torch.Tensor, dims: tuple[int, int] = (2, 3)) -> torch.Tensor:
    """Each image of a batch turned by a random multiple of 90 degrees in the plane ``dims`` (square
    images; (2, 3) for (N, C, H, W), (1, 2) for (N, H, W, C))."""
    turns = torch.randint(0, 4, (x.shape[0],), device=x.device)
    out = x.clone()
    for k in (1, 2, 3):
        chosen = turns == k
        if chosen.any():
            out[chosen] = torch.rot90(x[chosen], k, dims=dims)
    return out


class BatchTransform(nn.Module):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W): augment when training, then centre on the training mean.

    Flips and turns move whole pixels, so they run on the uint8 cells (a quarter of the bytes of
    floats); the conversion to float, the colour shift and the centring then run in place. The random
    draws and the arithmetic are those of the float-domain reference (``reference``): the same output,
    bit for bit."""

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

    def _moved(self, cells: torch.Tensor) -> torch.Tensor:
        """Random flips (left-right, then up-down) and turns of (N, H, W, C) cells of any dtype: the draws
        of ``reference``, then each group of cells sharing a transform moved in one go."""
        n, device = cells.shape[0], cells.device
        if n == 0:
            return cells
        none = torch.zeros(n, dtype=torch.long, device=device)
        left_right = (torch.rand(n, device=device) < 0.5).long() if self.flips else none
        up_down = (torch.rand(n, device=device) < 0.5).long() if self.flips else none
        square = cells.shape[1] == cells.shape[2]
        turns = torch.randint(0, 4, (n,), device=device) if self.rot90 and square else none
        codes = left_right * 8 + up_down * 4 + turns
        order = torch.argsort(codes, stable=True)  # the cells grouped by transform
        sizes = torch.bincount(codes, minlength=16).tolist()
        parts, start = [], 0
        for code, size in enumerate(sizes):
            if not size:
                continue
            part = cells[order[start : start + size]]
            start += size
            flips = [d for d, bit in ((2, 8), (1, 4)) if code & bit]
            part = part.flip(flips) if flips else part
            parts.append(torch.rot90(part, code & 3, dims=(1, 2)) if code & 3 else part)
        return torch.cat(parts)[torch.argsort(order)]  # back in the batch's order

    def _colour_shift(self, n: int, device: torch.device) -> torch.Tensor | None:
        """Lighting noise along the RGB principal components: (n, 3), sum_i e_i alpha_i scale_i."""
        if self.pca_colour_std <= 0:
            return None
        alpha = torch.randn(n, 3, device=device) * self.pca_colour_std
        scale = self.eigvals if self.pca_colour_scale == "eigenvalue" else self.eigvals.sqrt()
        return (alpha * scale) @ self.eigvecs.T

    def forward(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        shift = None
        if train:
            images = self._moved(images)
            shift = self._colour_shift(images.shape[0], images.device)
        # NCHW and contiguous: conv backward on channels-last input crashes some CPU builds
        x = images.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        if shift is not None:
            x.add_(shift[:, :, None, None])
        if self.mean_centring:
            return x.sub_(self.mean).div_(self.std)
        return x.sub_(0.5).div_(0.25)

    def reference(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """The same transform written plainly on float NCHW tensors (slower; tests compare the two)."""
        x = images.permute(0, 3, 1, 2).contiguous().float() / 255.0
        if train:
            n = x.shape[0]
            if self.flips:
                x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
                x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(2), x)
            if self.rot90 and x.shape[2] == x.shape[3]:
                x = random_rot90(x)
            shift = self._colour_shift(n, x.device)
            if shift is not None:
                x = x + shift[:, :, None, None]
        if self.mean_centring:
            return (x - self.mean) / self.std
        return (x - 0.5) / 0.25
