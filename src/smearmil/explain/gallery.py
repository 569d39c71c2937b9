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

SALIENCY_BAG = 256  # larger bags: saliency of the shown cells as a bag of their own (bounded memory)


@dataclass
class PatientExplanation:
    patient: str
    cells: list[str]  # every cell of the patient
    contributions: np.ndarray  # (n,) each cell's signed part in the patient's logit
    shown: np.ndarray  # (m,) indices of the most and least contributing cells
    saliency: np.ndarray  # (m, H, W) of the shown cells
    images: np.ndarray  # (m, H, W, 3) uint8, the shown cells


def explain_patient(
    trained: TrainedModel,
    patient: str,
    cells: np.ndarray,
    cell_ids: list[str],
    attributes: np.ndarray,
    k: int = 6,
) -> PatientExplanation:
    """Contributions of every cell of one patient (computed chunk by chunk) and the saliency of its ``k``
    most and ``k`` least contributing cells (uint8 cells, encoded attributes)."""
    if trained.transform is None:
        raise ValueError("this model does not look at cells")
    model = trained.model.cpu().eval()
    transform = trained.transform.cpu().eval()

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return transform(x, train=False)

    raw = torch.from_numpy(np.require(cells, requirements=["C", "W"]))  # copies only a read-only map
    attrs = torch.from_numpy(np.asarray(attributes, dtype=np.float32)[None])
    contributions = cell_contributions(model, raw, prepare=prepare)
    order = np.argsort(-contributions)
    shown = np.unique(np.concatenate([order[:k], order[::-1][:k]]))
    target = 0 if model.n_classes == 2 else int(np.argmax(contributions))
    if len(raw) <= SALIENCY_BAG:
        saliency = guided_saliency(model, prepare(raw), attrs, target=target)[shown]
    else:
        saliency = guided_saliency(model, prepare(raw[torch.from_numpy(shown)]), attrs, target=target)
    return PatientExplanation(patient, list(cell_ids), contributions, shown, saliency, np.asarray(cells)[shown])


def gallery_png(explanation: PatientExplanation, path: str | Path, k: int = 6, title: str = "") -> Path:
    """Top and bottom ``k`` cells by contribution; each cell above its saliency overlay."""
    values = explanation.contributions[explanation.shown]
    order = np.argsort(-values)  # positions within the shown cells
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
            top.set_title(f"{values[i]:+.3g}", fontsize=7)
            s = explanation.saliency[i]
            bottom.imshow(explanation.images[i])
            bottom.imshow(s / (s.max() or 1), cmap="inferno", alpha=0.55)
        axes[2 * g][0].text(
            -0.15, 0.5, label, transform=axes[2 * g][0].transAxes, rotation=90, va="center", ha="right", fontsize=8
        )
    fig.suptitle(title or f"patient {explanation.patient}", fontsize=9)
    return save_figure(fig, Path(path))
