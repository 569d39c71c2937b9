"""Saliency overlays of a patient's cells on the review page, computed on first request.

Only a model that reads pixels (a deep model trained end to end on the cells) has saliency: guided
backpropagation x input (``explain.saliency``), each cell's map scaled to its own 99th percentile
(``explain.gallery.visible_saliency``) and laid over the cell at its native resolution. A predict folder's
patients are explained by every model of its predictor (maps averaged), a cv or train folder's by the
model it was a test patient of. Torch is imported on the first computation, never when the page starts."""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .folder import ReviewFolder, ReviewPatient

KEPT = 8  # patients whose overlays stay in memory
FEATURES = "this model reads cell features, not pixels: no saliency"
NO_IMAGES = "this model reads no cell image: no saliency"
NO_MODEL = "the model that made these predictions is not here: no saliency"


class SaliencyMaps:
    """The overlays of ``folder``'s cells, one patient at a time (thread-safe, the last ``KEPT`` kept)."""

    def __init__(self, folder: ReviewFolder):
        self.folder = folder
        self._lock = threading.Lock()
        self._patients: dict[str, threading.Lock] = {}
        self._done: OrderedDict[str, list[bytes | None]] = OrderedDict()
        self._judges: dict[str, list[Any]] | None = None

    @cached_property
    def run(self) -> Path | None:
        """The folder of the model(s): predict's ``run.json`` names it; a cv or train folder is its own."""
        return self.folder.model_folder if self.folder.kind == "predict" else self.folder.source.parent

    @cached_property
    def reason(self) -> str:
        """Why the page offers no saliency (empty: it does), read from ``predictor.json`` without torch."""
        run = self.run
        metas = [run / "predictor.json", *sorted(run.glob("*/predictor.json"))] if run is not None else []
        found = [json.loads(m.read_text(encoding="utf-8")) for m in metas if m.is_file()]
        if not found:
            return NO_MODEL
        if any(m.get("method") == "run" and m.get("uses_images") for m in found):
            return ""
        return FEATURES if any(m.get("uses_images") for m in found) else NO_IMAGES

    @property
    def available(self) -> bool:
        return not self.reason

    def png(self, patient: ReviewPatient, cell: int) -> bytes | None:
        """The overlay of ``patient``'s cell ``cell`` (page order) as PNG, None when it cannot be made."""
        with self._lock:
            lock = self._patients.setdefault(patient.id, threading.Lock())
        with lock:  # the page asks for every cell at once: one computation, the others wait for it
            with self._lock:
                done = self._done.get(patient.id)
                if done is not None:
                    self._done.move_to_end(patient.id)
            if done is None:
                done = self._compute(patient)
                with self._lock:
                    self._done[patient.id] = done
                    while len(self._done) > KEPT:
                        self._done.popitem(last=False)
        return done[cell]

    def _models(self, patient: str) -> list[Any]:
        """The trained models that explain ``patient`` (loaded once, on first use)."""
        with self._lock:
            if self._judges is None:
                self._judges = _judges(self.run, self.folder.kind == "predict") if self.run else {}
            return self._judges.get(patient, self._judges.get("", []))

    def _compute(self, patient: ReviewPatient) -> list[bytes | None]:
        from ..data.images import read_rgb

        models = self._models(patient.id) if self.available else []
        if not models or not patient.cells:
            return [None] * len(patient.cells)
        prep = models[0].config.image.preprocessing
        native: list[np.ndarray | None] = []
        for c in patient.cells:
            try:
                native.append(read_rgb(c.file))
            except (OSError, ValueError):
                native.append(None)
        readable = [i for i, image in enumerate(native) if image is not None]
        if not readable:
            return [None] * len(patient.cells)
        from PIL import Image

        inputs = np.stack([prep.apply(Image.fromarray(native[i])) for i in readable])  # type: ignore[arg-type]
        attributes = self._attributes(models[0], patient.id)
        if attributes is None:
            return [None] * len(patient.cells)
        maps = np.mean([_maps(m, inputs, attributes, self._column(m, patient)) for m in models], axis=0)
        from ..explain.gallery import visible_saliency

        heat = visible_saliency(maps)
        out: list[bytes | None] = [None] * len(patient.cells)
        for k, i in enumerate(readable):
            out[i] = overlay_png(native[i], heat[k], prep)  # type: ignore[arg-type]
        return out

    def _attributes(self, trained: Any, patient: str) -> np.ndarray | None:
        """The patient's encoded attributes (None: the model needs some and the data set is not readable)."""
        if not trained.encoder.names:
            return np.zeros(0, np.float32)
        data = self.folder.data
        if data is None or patient not in data:
            return None
        return np.asarray(trained.encoder.transform(data, [patient])[0], dtype=np.float32)

    def _column(self, trained: Any, patient: ReviewPatient) -> int:
        """The logit explained: the single one of two classes, else the class the contributions are toward."""
        if trained.model.n_classes == 2:
            return 0
        toward = patient.toward_class or patient.call
        return trained.class_names.index(toward) if toward in trained.class_names else 0


def _judges(run: Path, ensemble: bool) -> dict[str, list[Any]]:
    """Patient -> the trained pixel models that explain it ("" -> every patient, a predictor's members)."""
    from ..training.methods.run import RunPredictor
    from ..training.predictor import load_predictor
    from ..training.run_dir import RunDir

    if ensemble:
        predictor = load_predictor(run)
        members = getattr(predictor, "members", [predictor])
        return {"": [m.trained for m in members if isinstance(m, RunPredictor) and m.uses_images]}
    out: dict[str, list[Any]] = {}
    for fold in RunDir(run).fold_models():
        if isinstance(fold.model, RunPredictor) and fold.model.uses_images:
            for pid in fold.test_ids:
                out[pid] = [fold.model.trained]
    return out


def _maps(trained: Any, cells: np.ndarray, attributes: np.ndarray, column: int) -> np.ndarray:
    """(n, H, W) raw saliency of the cells under one model; a bag larger than ``SALIENCY_BAG`` is explained
    chunk by chunk, each chunk a bag of its own (bounded memory)."""
    import torch

    from ..explain.gallery import SALIENCY_BAG
    from ..explain.saliency import guided_saliency

    model = trained.model.cpu().eval()
    transform = trained.transform.cpu().eval()
    tensor = torch.from_numpy(attributes)[None]
    parts = []
    for start in range(0, len(cells), SALIENCY_BAG):
        chunk = torch.from_numpy(np.ascontiguousarray(cells[start : start + SALIENCY_BAG]))
        parts.append(guided_saliency(model, transform(chunk, train=False), tensor, target=column))
    return np.concatenate(parts)


def overlay_png(image: np.ndarray, heat: np.ndarray, prep: Any) -> bytes:
    """``image`` (native H, W, 3) with ``heat`` ([0, 1], the model's input grid) laid where the model saw it
    (``Preprocessing``: centre square, resized, centre crop), inferno colours, as PNG of the image's size."""
    from matplotlib import colormaps
    from PIL import Image

    h, w = image.shape[:2]
    side = min(w, h)
    scale = side / prep.size
    offset = (prep.size - prep.output_size) // 2
    left, top = (w - side) // 2 + round(offset * scale), (h - side) // 2 + round(offset * scale)
    extent = max(1, round(prep.output_size * scale))
    grown = Image.fromarray(heat.astype(np.float32), mode="F").resize((extent, extent), Image.Resampling.BILINEAR)
    full = np.zeros((h, w), np.float32)
    full[top : top + extent, left : left + extent] = np.asarray(grown)[: h - top, : w - left]
    full = np.clip(full, 0, 1)[..., None]
    colours = colormaps["inferno"](full[..., 0])[..., :3] * 255
    alpha = 0.85 * full
    blended = image.astype(np.float32) * (1 - alpha) + colours * alpha
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
