"""A trained model as saved on disk: weights (``model.pt``, tensors only) and ``model.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.attributes import AttributeEncoder
from ..data.cache import ImageCache
from ..models.base import Bags, MILModel, probabilities
from ..models.config import build_model
from ..utils.atomic import atomic_path, write_json
from .augment import BatchTransform
from .config import RunConfig

FORMAT_VERSION = 1


@dataclass
class PatientPrediction:
    id: str
    proba: np.ndarray  # (C,)
    weights: np.ndarray | None  # (n_cells,) contribution of each cell
    gate: float | None = None  # MOE: weight of the image expert


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TrainedModel:
    def __init__(self, model: MILModel, transform: BatchTransform | None, encoder: AttributeEncoder,
                 config: RunConfig, class_names: list[str], threshold: float = 0.5,
                 threshold_source: str = "fixed"):
        self.model, self.transform, self.encoder = model, transform, encoder
        self.config, self.class_names = config, class_names
        self.threshold, self.threshold_source = threshold, threshold_source

    @property
    def uses_images(self) -> bool:
        return self.config.model.uses_images

    def with_model(self, model: MILModel, kind: str) -> TrainedModel:
        """The same preprocessing and thresholds around another model (e.g. one expert of a mixture)."""
        config = self.config.model_copy(update={"model": self.config.model.model_copy(update={"kind": kind})})
        return TrainedModel(model, self.transform, self.encoder, config, self.class_names, self.threshold,
                            self.threshold_source)

    def models(self) -> dict[str, TrainedModel]:
        """Every model of the run by name: a fusion model brings its experts (and their average)."""
        from ..models.fusion import AverageModel, MixtureOfExperts

        kind = self.config.model.kind
        if not isinstance(self.model, (AverageModel, MixtureOfExperts)):
            return {kind.upper(): self}
        cnn, mlp = self.model.cnn, self.model.mlp
        out = {"CNN": self.with_model(cnn, "cnn"), "MLP": self.with_model(mlp, "mlp"),
               "AVG": self.with_model(AverageModel(cnn, mlp), "avg")}
        if isinstance(self.model, MixtureOfExperts):
            out["MOE"] = self
        return out

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        payload = {"model": self.model.state_dict(),
                   "transform": self.transform.state_dict() if self.transform is not None else {}}
        with atomic_path(directory / "model.pt") as tmp:
            torch.save(payload, tmp)
        write_json(directory / "model.json", {
            "format": FORMAT_VERSION, "config": self.config.model_dump(mode="json"), "class_names": self.class_names,
            "attributes": self.encoder.to_dict(), "threshold": self.threshold,
            "threshold_source": self.threshold_source, "has_transform": self.transform is not None,
        })

    @classmethod
    def load(cls, directory: str | Path) -> TrainedModel:
        """Load a saved model; weights are read with ``weights_only=True`` (no unpickling of code)."""
        directory = Path(directory)
        meta_path = directory / "model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} holds no trained model (model.json); train one with `smearmil train`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = RunConfig.model_validate(meta["config"])
        encoder = AttributeEncoder.from_dict(meta["attributes"])
        model = build_model(config.model, len(meta["class_names"]), len(encoder.feature_names), config.image.input_size)
        payload = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        transform = None
        if meta["has_transform"]:
            transform = BatchTransform(payload["transform"], mean_centring=config.train.mean_centring)
            transform.load_state_dict(payload["transform"])
        return cls(model, transform, encoder, config, meta["class_names"], meta["threshold"], meta["threshold_source"])

    @torch.no_grad()
    def predict_arrays(self, ids: Sequence[str], bags: Sequence[np.ndarray | None], attributes: np.ndarray,
                       bags_per_batch: int = 4, device: torch.device | None = None) -> list[PatientPrediction]:
        """Predict patients from their uint8 cells (n, H, W, 3) and encoded attributes (n_patients, d)."""
        device = device or default_device()
        self.model.to(device).eval()
        if self.transform is not None:
            self.transform.to(device)
        out: list[PatientPrediction] = []
        for start in range(0, len(ids), bags_per_batch):
            chunk = range(start, min(start + bags_per_batch, len(ids)))
            images = segments = None
            if self.uses_images:
                arrays = [torch.from_numpy(np.array(bags[i])) for i in chunk]
                sizes = torch.tensor([len(a) for a in arrays])
                images = self.transform(torch.cat(arrays).to(device), train=False)  # type: ignore[misc]
                segments = torch.repeat_interleave(torch.arange(len(arrays)), sizes).to(device)
            batch = Bags(images, segments if segments is not None else torch.zeros(0, dtype=torch.long, device=device),
                         len(chunk), torch.from_numpy(attributes[list(chunk)]).to(device), None, [ids[i] for i in chunk])
            result = self.model(batch)
            proba = probabilities(result.logits.float(), self.model.n_classes).cpu().numpy()
            gates = result.extras.get("gate")
            for b, i in enumerate(chunk):
                weights = None
                if result.weights is not None and segments is not None:
                    weights = result.weights[segments == b].float().cpu().numpy()
                gate = float(gates[b]) if gates is not None else None
                out.append(PatientPrediction(ids[i], proba[b].astype(np.float64), weights, gate))
        return out

    def predict_cohort(self, cohort: Any, ids: Sequence[str], cache: ImageCache | None,
                       device: torch.device | None = None) -> list[PatientPrediction]:
        attributes = self.encoder.transform(cohort, ids) if self.encoder.names else np.zeros((len(ids), 0), np.float32)
        bags = [cache.bag(i) if cache is not None and self.uses_images else None for i in ids]
        return self.predict_arrays(ids, bags, attributes, device=device)
