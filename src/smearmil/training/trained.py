"""A trained model as saved on disk: weights (``model.pt``, tensors only) and ``model.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..data.attributes import AttributeEncoder
from ..data.cache import ImageCache
from ..models.base import Bags, MILModel, probabilities
from ..models.cell_encoder import CellEncoder
from ..models.factory import build_model
from ..models.inference import for_inference
from ..utils.atomic import write_json
from ..utils.checkpoints import load_state, load_tensors, save_tensors
from ..utils.device import default_device
from ..utils.distributed import sharded
from .augment import BatchTransform
from .config import RunConfig

FORMAT_VERSION = 1
MODEL_META = "model.json"  # beside model.pt (weights only)


@dataclass
class PatientPrediction:
    id: str
    proba: np.ndarray  # (C,)
    weights: np.ndarray | None  # (n_cells,) contribution of each cell
    gate: float | None = None  # MOE: weight of the image expert


class TrainedModel:
    def __init__(
        self,
        model: MILModel,
        transform: BatchTransform | None,
        encoder: AttributeEncoder,
        config: RunConfig,
        class_names: list[str],
        threshold: float = 0.5,
        threshold_source: str = "fixed",
    ):
        self.model, self.transform, self.encoder = model, transform, encoder
        self.config, self.class_names = config, class_names
        self.threshold, self.threshold_source = threshold, threshold_source
        self.source = ""  # the folder it was loaded from

    @property
    def uses_images(self) -> bool:
        return self.model.uses_images

    def with_model(self, model: MILModel, kind: str) -> TrainedModel:
        """The same preprocessing and thresholds around another model (e.g. one expert of a mixture)."""
        config = self.config.model_copy(update={"model": self.config.model.model_copy(update={"kind": kind})})
        return TrainedModel(
            model, self.transform, self.encoder, config, self.class_names, self.threshold, self.threshold_source
        )

    def models(self) -> dict[str, TrainedModel]:
        """Every model of the run by name: a fusion model brings its experts (and their average)."""
        from ..models.fusion import AverageModel

        kind = self.config.model.kind
        experts = self.model.experts()
        if not experts:
            return {kind.upper(): self}
        out = {name.upper(): self.with_model(expert, name) for name, expert in experts.items()}
        if {"cnn", "mlp"} <= set(experts):
            out["AVG"] = self.with_model(AverageModel(experts["cnn"], experts["mlp"]), "avg")  # type: ignore[arg-type]
        out[kind.upper()] = self
        return out

    def cell_encoder(self) -> CellEncoder:
        """The image expert's encoder with this model's preprocessing: the "supervised" encoder."""
        expert = self.model.image_expert()
        if expert is None or self.transform is None:
            raise ValueError(f"this {self.config.model.kind} model has no image encoder")
        meta = {"method": "supervised", "encoder": self.config.model.encoder.model_dump(), "source": self.source}
        return CellEncoder(expert.encoder, EvalTransform(self.transform), self.config.image.preprocessing, meta)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        payload = {
            "model": self.model.state_dict(),
            "transform": self.transform.state_dict() if self.transform is not None else {},
        }
        save_tensors(payload, directory / "model.pt", "model")
        write_json(
            directory / MODEL_META,
            {
                "format": FORMAT_VERSION,
                "config": self.config.model_dump(mode="json"),
                "class_names": self.class_names,
                "attributes": self.encoder.to_dict(),
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "has_transform": self.transform is not None,
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        """Load a saved model; weights are read with ``weights_only=True`` (no unpickling of code)."""
        directory = Path(directory)
        meta_path = directory / MODEL_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} holds no trained model (model.json); train one with `smearmil train`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            config = RunConfig.model_validate(meta["config"])
            encoder = AttributeEncoder.from_dict(meta["attributes"])
            n_classes = len(meta["class_names"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{meta_path} is not a model description smearmil wrote ({error}); train again") from None
        model = build_model(config.model, n_classes, len(encoder.feature_names), config.image.input_size)
        weights = directory / "model.pt"
        payload = load_tensors(weights, "model checkpoint")
        if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
            raise ValueError(f"{weights} is not a smearmil model checkpoint; train again")
        load_state(model, payload["model"], weights)
        transform = None
        if meta.get("has_transform"):
            stats = payload.get("transform") or {}
            if not {"mean", "std", "eigvals", "eigvecs"} <= set(stats):
                raise ValueError(f"{weights} lacks the image normalisation its model needs; train again")
            transform = BatchTransform(stats, mean_centring=config.train.mean_centring)
            load_state(transform, stats, weights)
        trained = cls(
            model, transform, encoder, config, meta["class_names"], meta["threshold"], meta["threshold_source"]
        )
        trained.source = str(directory)
        return trained

    def fast_model(self, device: torch.device) -> MILModel:
        """The model for prediction: batch norm folded, channels-last convolutions (``for_inference``),
        made once per device; outputs equal the trained model's within float rounding."""
        cached = getattr(self, "_fast", None)
        if cached is None or cached[0] != device:
            self._fast = (device, cast(MILModel, for_inference(self.model.to(device).eval())))
        return self._fast[1]

    @torch.no_grad()
    def predict_arrays(
        self,
        ids: Sequence[str],
        bags: Sequence[np.ndarray | None],
        attributes: np.ndarray,
        bags_per_batch: int = 4,
        device: torch.device | None = None,
        cells_per_batch: int = 2048,
    ) -> list[PatientPrediction]:
        """Predict patients from their uint8 cells (n, H, W, 3) and encoded attributes (n_patients, d).

        A batch holds up to ``bags_per_batch`` bags and ``cells_per_batch`` cells (a larger bag alone);
        cells are normalised chunk by chunk inside the model, and a cached bag larger than
        ``cells_per_batch`` is even read chunk by chunk, so memory stays bounded for any bag."""
        device = device or default_device()
        model = self.fast_model(device)
        transform = self.transform.to(device).eval() if self.transform is not None else None
        prepare = (lambda x: transform(x.to(device), train=False)) if transform is not None else None
        out: list[PatientPrediction] = []
        sizes = bags.sizes() if isinstance(bags, CachedBags) else [len(b) if b is not None else 0 for b in bags]

        def cells(i: int) -> torch.Tensor:
            if isinstance(bags, CachedBags) and sizes[i] > cells_per_batch:
                return cast(torch.Tensor, _LazyCells(bags.cache, bags.cache.rows(bags.ids[i])))
            return torch.from_numpy(np.require(bags[i], requirements=["C", "W"]))

        for chunk in _batches(sizes, bags_per_batch, cells_per_batch):
            images = [cells(i) for i in chunk] if self.uses_images else None
            batch = Bags.of(torch.from_numpy(attributes[list(chunk)]), images, ids=[ids[i] for i in chunk]).to(device)
            batch.prepare = prepare if batch.images is not None else None
            with torch.inference_mode():
                result = model(batch)
            proba = probabilities(result.logits.float(), model.n_classes).cpu().numpy()
            gates = result.extras.get("gate")
            for b, i in enumerate(chunk):
                weights = None
                if result.weights is not None and batch.images is not None:
                    weights = result.weights[batch.segments == b].float().cpu().numpy()
                gate = float(gates[b]) if gates is not None else None
                out.append(PatientPrediction(ids[i], proba[b].astype(np.float64), weights, gate))
        return out

    def predict_cohort(
        self, cohort: Any, ids: Sequence[str], cache: ImageCache | None, device: torch.device | None = None
    ) -> list[PatientPrediction]:
        """Predict ``ids`` from the cohort's attributes and cached cells; in a run of several processes,
        each predicts its share of the patients and every process gets all predictions, in order."""

        def predict(share: Sequence[str]) -> list[PatientPrediction]:
            if not share:
                return []
            attributes = (
                self.encoder.transform(cohort, share) if self.encoder.names else np.zeros((len(share), 0), np.float32)
            )
            bags: Sequence[np.ndarray | None] = [None] * len(share)
            if cache is not None and self.uses_images:
                bags = CachedBags(cache, list(share))
            return self.predict_arrays(share, bags, attributes, device=device)

        return sharded(predict, list(ids), key=lambda p: p.id)


class EvalTransform(nn.Module):
    """A model's input normalisation as a module of its own (no augmentation): uint8 cells -> input."""

    def __init__(self, transform: BatchTransform):
        super().__init__()
        self.transform = transform.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.transform(images, train=False)


class _LazyCells:
    """A large cached bag that the model reads chunk by chunk as it encodes it (never whole in memory)."""

    device = torch.device("cpu")
    dtype = torch.uint8

    def __init__(self, cache: ImageCache, rows: range):
        self.cache, self.rows = cache, rows
        self.shape = (len(rows), *cache.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return torch.from_numpy(self.cache.read(self.rows[index]))

    def to(self, device: Any, non_blocking: bool = False) -> _LazyCells:
        return self  # each chunk moves to the device when it is prepared


class CachedBags(Sequence[np.ndarray]):
    """Patients' cells read from the cache only when a batch needs them (one batch in memory at a time)."""

    def __init__(self, cache: ImageCache, ids: list[str]):
        self.cache, self.ids = cache, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.cache.read_bag(self.ids[i])

    def sizes(self) -> list[int]:
        return [len(self.cache.rows(i)) for i in self.ids]


def _batches(sizes: Sequence[int], max_bags: int, max_cells: int) -> list[range]:
    """Consecutive index ranges of at most ``max_bags`` bags and ``max_cells`` cells (a larger bag alone)."""
    out, start, cells = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_bags or cells + size > max_cells):
            out.append(range(start, i))
            start, cells = i, 0
        cells += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out


def load_encoder(path: str | Path) -> CellEncoder:
    """A frozen encoder: a shipped one by name (``smearmil-cells-v1``), a pre-training folder, or the image
    encoder of a trained model folder."""
    from ..models.shipped import is_shipped, shipped_encoder_dir

    if is_shipped(path):
        return CellEncoder.load(shipped_encoder_dir(str(path)))
    if CellEncoder.is_saved_in(path):
        return CellEncoder.load(path)
    directory = Path(path)
    if (directory / MODEL_META).is_file():
        return TrainedModel.load(directory).cell_encoder()
    raise FileNotFoundError(
        f"{path}: neither a pre-training folder (encoder.json, from `smearmil ssl pretrain`) "
        "nor a trained model (model.json)"
    )
