"""Galleries of the most and least contributing cells of a patient, with saliency overlays (PNG).

The number above each cell is its signed contribution to the logit of one class (the positive class of a
binary task, else the predicted class): in logit units, positive pushes the patient toward that class.
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
from .saliency import guided_saliency

SALIENCY_BAG = 256  # larger bags: saliency of the shown cells as a bag of their own (bounded memory)
SALIENCY_LABEL = "saliency: |guided backprop x input|, relative to the largest shown"


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


def contribution_label(toward: str, against: str = "", image_expert: bool = False) -> str:
    """What a gallery's numbers mean, in words."""
    whose = "the image expert's logit" if image_expert else "the logit"
    minus = f", - toward {against}" if against else f", - away from {toward}"
    return f"contribution to {whose} of {toward} (logit units; + pushes toward {toward}{minus})"


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


def gallery_png(
    explanation: PatientExplanation, path: str | Path, k: int = 6, title: str = "", label: str = ""
) -> Path:
    """Highest and lowest ``k`` cells by contribution, each above its saliency overlay (with a colour bar)."""
    values = explanation.contributions[explanation.shown]
    return cells_png(
        explanation.images,
        values,
        path,
        label or contribution_label(explanation.toward, explanation.against),
        k,
        title or f"patient {explanation.patient}",
        saliency=explanation.saliency,
    )


def cells_png(
    images: Sequence[np.ndarray] | np.ndarray,
    values: np.ndarray,
    path: str | Path,
    label: str,
    k: int = 6,
    title: str = "",
    saliency: np.ndarray | None = None,
    signed: bool = True,
    notes: Sequence[str] | None = None,
) -> Path:
    """A gallery of cells (uint8 RGB) with their scores: the highest ``k`` above the lowest ``k`` (disjoint),
    each with its saliency below when given; ``label`` says what the numbers are. Signed scores show their
    sign (red: positive, blue: negative); ``notes`` (e.g. cell types) go below the cells."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values)
    n = len(order)
    groups = [
        ("highest", order[: min(k, (n + 1) // 2)]),
        ("lowest", order[::-1][: min(k, n // 2)]),
    ]
    groups = [(name, rows) for name, rows in groups if len(rows)]
    per = 2 if saliency is not None else 1
    cols = max(len(rows) for _, rows in groups)
    fig, axes = plt.subplots(per * len(groups), cols, figsize=(1.25 * cols + 1.6, 1.3 * per * len(groups) + 1.0))
    axes = np.asarray(axes).reshape(per * len(groups), cols)
    top = float(saliency.max()) if saliency is not None and saliency.size and saliency.max() > 0 else 1.0
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
            colour = ("tab:red" if values[i] > 0 else "tab:blue") if signed else "black"
            cell_axes[0].set_title(f"{values[i]:+.3g}" if signed else f"{values[i]:.3g}", fontsize=8, color=colour)
            if notes is not None and notes[i]:
                cell_axes[0].set_xlabel(notes[i], fontsize=7)
            if saliency is not None:
                cell_axes[1].imshow(images[i])
                cell_axes[1].imshow(saliency[i] / top, cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        axes[per * g, 0].set_ylabel(name, fontsize=8)
        if saliency is not None:
            axes[per * g + 1, 0].set_ylabel("saliency", fontsize=8)
    if saliency is not None:
        mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="inferno")
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, label="saliency (relative)")
    fig.suptitle(title, fontsize=9)
    fig.text(0.01, 0.005, "numbers: " + label, fontsize=7, ha="left", va="bottom", wrap=True)
    return save_figure(fig, Path(path))


def read_cell_image(path: str | Path, size: int = 96) -> np.ndarray:
    """A cell image file as uint8 RGB, fitted within ``size`` pixels (for galleries without a model)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        rgb.thumbnail((size, size))
        return np.asarray(rgb, dtype=np.uint8)
