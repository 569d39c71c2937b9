"""Galleries of the most and least contributing cells of a patient, with saliency overlays (PNG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..training.trained import TrainedModel
from ..utils.plotting import plt, save_figure
from .contributions import cell_contributions
from .saliency import guided_saliency


@dataclass
class PatientExplanation:
    patient: str
    cells: list[str]
    contributions: np.ndarray  # (n,)
    saliency: np.ndarray  # (n, H, W)
    images: np.ndarray  # (n, H, W, 3) uint8


def explain_patient(
    trained: TrainedModel, patient: str, cells: np.ndarray, cell_ids: list[str], attributes: np.ndarray
) -> PatientExplanation:
    """Contributions and saliency of every cell of one patient (uint8 cells, encoded attributes)."""
    if trained.transform is None:
        raise ValueError("this model does not look at cells")
    model = trained.model.cpu().eval()
    transform = trained.transform.cpu()
    images = transform(torch.from_numpy(np.array(cells)), train=False)
    attrs = torch.from_numpy(np.asarray(attributes, dtype=np.float32)[None])
    contributions = cell_contributions(model, images)
    saliency = guided_saliency(
        model, images, attrs, target=0 if model.n_classes == 2 else int(np.argmax(contributions))
    )
    return PatientExplanation(patient, list(cell_ids), contributions, saliency, np.asarray(cells))


def gallery_png(explanation: PatientExplanation, path: str | Path, k: int = 6, title: str = "") -> Path:
    """Top and bottom ``k`` cells by contribution; each cell above its saliency overlay."""
    order = np.argsort(-explanation.contributions)
    k = min(k, len(order))
    groups = [("most contributing", order[:k]), ("least contributing", order[::-1][:k])]
    fig, axes = plt.subplots(4, k, figsize=(1.5 * k, 6.4), squeeze=False)
    for g, (label, rows) in enumerate(groups):
        for j in range(k):
            top, bottom = axes[2 * g][j], axes[2 * g + 1][j]
            for ax in (top, bottom):
                ax.axis("off")
            if j >= len(rows):
                continue
            i = rows[j]
            top.imshow(explanation.images[i])
            top.set_title(f"{explanation.contributions[i]:+.3g}", fontsize=7)
            s = explanation.saliency[i]
            bottom.imshow(explanation.images[i])
            bottom.imshow(s / (s.max() or 1), cmap="inferno", alpha=0.55)
        axes[2 * g][0].text(
            -0.15, 0.5, label, transform=axes[2 * g][0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    fig.suptitle(title or f"patient {explanation.patient}", fontsize=9)
    return save_figure(fig, Path(path))
