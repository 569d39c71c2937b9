"""Galleries of the most and least contributing cells of a patient, with saliency overlays (PNG).

A cell's contribution is its signed part in the logit of one class (``models.contributions``, in logit
units). A gallery shows it as the cell's share of the patient's evidence: the contribution over the sum of
every cell's absolute contribution, signed toward the class the patient is called (``+12% toward tumoral``);
the raw logit values stay in the CSVs that list them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.contributions import cell_contributions
from ..training.trained import TrainedModel
from ..utils.plotting import plt, save_figure
from .evidence import evidence_shares, share_text, toward_call
from .saliency import guided_saliency

SALIENCY_BAG = 256  # larger bags: saliency of the shown cells as a bag of their own (bounded memory)
SALIENCY_LABEL = "saliency (|guided backprop x input|),\neach cell scaled to its own 99th percentile"


@dataclass
class PatientExplanation:
    patient: str
    cells: list[str]  # every cell of the patient
    contributions: np.ndarray  # (n,) each cell's signed part in the logit of ``toward``
    shown: np.ndarray  # (m,) indices of the most and least contributing cells
    saliency: np.ndarray  # (m, H, W) of the shown cells
    images: np.ndarray  # (m, H, W, 3) uint8, the shown cells
    toward: str = ""  # the class whose logit the contributions add to (+ pushes toward it)
    against: str = ""  # binary tasks: the class a negative contribution pushes toward


def explain_patient(
    trained: TrainedModel,
    patient: str,
    cells: np.ndarray,
    cell_ids: list[str],
    attributes: np.ndarray,
    k: int = 6,
    target: int | None = None,
) -> PatientExplanation:
    """Contributions of every cell of one patient (computed chunk by chunk) and the saliency of its ``k``
    most and ``k`` least contributing cells (uint8 cells, encoded attributes). Contributions are toward
    the positive class of a binary task, else toward class ``target`` (default: the predicted one)."""
    if trained.transform is None:
        raise ValueError("this model does not look at cells")
    model = trained.model.cpu().eval()
    transform = trained.transform.cpu().eval()

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return transform(x, train=False)

    raw = torch.from_numpy(np.require(cells, requirements=["C", "W"]))  # copies only a read-only map
    attrs = np.asarray(attributes, dtype=np.float32)[None]
    names = trained.class_names
    if model.n_classes == 2:
        column, toward, against = 0, names[1], names[0]  # one logit: class 1 against class 0
    else:
        if target is None:
            proba = trained.predict_arrays([patient], [np.asarray(cells)], attrs, device=torch.device("cpu"))[0].proba
            target = int(np.argmax(proba))
        column, toward, against = target, names[target], ""
    contributions = cell_contributions(model, raw, target=column, prepare=prepare)
    order = np.argsort(-contributions)
    shown = np.unique(np.concatenate([order[:k], order[::-1][:k]]))
    tensor = torch.from_numpy(attrs)
    if len(raw) <= SALIENCY_BAG:
        saliency = guided_saliency(model, prepare(raw), tensor, target=column)[shown]
    else:
        saliency = guided_saliency(model, prepare(raw[torch.from_numpy(shown)]), tensor, target=column)
    images = np.asarray(cells)[shown]
    return PatientExplanation(patient, list(cell_ids), contributions, shown, saliency, images, toward, against)


def visible_saliency(maps: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Saliency maps smoothed a little and each scaled to its own ``percentile`` (clipped to [0, 1]), so
    that every cell's map is visible whatever its magnitude against the others."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros(maps.shape, dtype=np.float64)
    for i, m in enumerate(np.asarray(maps, dtype=np.float64)):
        smooth = gaussian_filter(m, sigma=max(1.0, m.shape[-1] / 64))
        top = float(np.percentile(smooth, percentile))
        out[i] = np.clip(smooth / top, 0, 1) if top > 0 else 0.0
    return out


def gallery_png(explanation: PatientExplanation, path: str | Path, k: int = 6, title: str = "", call: str = "") -> Path:
    """Highest and lowest ``k`` cells by their share of the evidence toward the patient's call (default:
    the class the contributions are toward), each above its saliency overlay (with a colour bar)."""
    values, toward, _ = toward_call(explanation.contributions, explanation.toward, explanation.against, call)
    shares = evidence_shares(values)[explanation.shown]
    return cells_png(
        explanation.images, shares, path, k, title, saliency=explanation.saliency, toward=toward or "the class"
    )


def cells_png(
    images: Sequence[np.ndarray] | np.ndarray,
    values: np.ndarray,
    path: str | Path,
    k: int = 6,
    title: str = "",
    saliency: np.ndarray | None = None,
    toward: str = "",
    notes: Sequence[str] | None = None,
) -> Path:
    """A gallery of cells (uint8 RGB) with their scores: the highest ``k`` above the lowest ``k`` (disjoint),
    each with its saliency below when given. With ``toward`` the scores are signed shares of the evidence
    toward that class (red: toward it, blue: against it), else unsigned scores (e.g. relative attention);
    ``notes`` (e.g. cell types) go below the cells."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values)
    n = len(order)
    names = (f"most toward\n{toward}", f"least toward\n{toward}") if toward else ("highest", "lowest")
    groups = [(names[0], order[: min(k, (n + 1) // 2)]), (names[1], order[::-1][: min(k, n // 2)])]
    groups = [(name, rows) for name, rows in groups if len(rows)]
    per = 2 if saliency is not None else 1
    cols = max(len(rows) for _, rows in groups)
    height = (1.55 if toward else 1.35) + (0.15 if notes is not None and any(notes) else 0)
    fig, axes = plt.subplots(
        per * len(groups), cols, figsize=(1.3 * cols + 1.9, height * per * len(groups) + 0.3), layout="constrained"
    )
    axes = np.asarray(axes).reshape(per * len(groups), cols)
    heat = visible_saliency(saliency) if saliency is not None else None
    for g, (name, rows) in enumerate(groups):
        for j in range(cols):
            cell_axes = axes[per * g : per * g + per, j]
            for ax in cell_axes:
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if j >= len(rows):
                continue
            i = rows[j]
            cell_axes[0].imshow(images[i])
            if toward:
                colour = "tab:red" if values[i] > 0 else "tab:blue" if values[i] < 0 else "black"
                cell_axes[0].set_title(f"{share_text(values[i])}\ntoward {toward}", fontsize=7, color=colour)
            else:
                cell_axes[0].set_title(f"{values[i]:.3g}", fontsize=8)
            if notes is not None and notes[i]:
                cell_axes[0].set_xlabel(notes[i], fontsize=7, labelpad=1)
            if heat is not None:
                cell_axes[1].imshow(images[i])
                cell_axes[1].imshow(heat[i], cmap="inferno", alpha=0.85 * heat[i], vmin=0, vmax=1)
        axes[per * g, 0].set_ylabel(name, fontsize=8)
        if heat is not None:
            axes[per * g + 1, 0].set_ylabel("saliency", fontsize=8)
    if heat is not None:
        mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="inferno")
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6)
        bar.set_label(SALIENCY_LABEL, fontsize=7)
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, Path(path))


def read_cell_image(path: str | Path, size: int = 96) -> np.ndarray:
    """A cell image file as uint8 RGB, fitted within ``size`` pixels (for galleries without a model)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        rgb.thumbnail((size, size))
        return np.asarray(rgb, dtype=np.uint8)
