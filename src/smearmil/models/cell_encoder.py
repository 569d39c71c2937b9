"""A frozen cell encoder with its input normalisation: pre-trained (SSL), supervised or random.

``CellEncoder`` is an inference object: it maps cached uint8 cells to embeddings, saves itself as
``encoder.pt`` (weights only) + ``encoder.json`` and loads back; ``extract_features`` fills a
feature store with the embeddings of a cohort.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.cache import ImageCache
from ..data.cohort import Cohort
from ..data.features import FeatureStore
from ..data.images import Preprocessing
from ..utils.atomic import write_json
from ..utils.checkpoints import load_state, load_tensors, save_tensors
from ..utils.device import default_device
from .specs import EncoderConfig

ENCODER_WEIGHTS = "encoder.pt"
EMBED_PIXELS = 512 * 64 * 64  # cells per embedding batch: 512 at 64 px, 41 at 224 px
ENCODER_META = "encoder.json"


class ChannelNormalise(nn.Module):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W), each channel standardised with fixed statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.permute(0, 3, 1, 2).contiguous().float() / 255.0 - self.mean) / self.std


class ChannelStatistics:
    """Per-channel mean and std (in [0, 1]) of uint8 cells added chunk by chunk (memory: one chunk)."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, np.zeros(3), np.zeros(3)

    def add(self, cells: np.ndarray, chunk: int = 128) -> ChannelStatistics:
        for start in range(0, len(cells), chunk):
            pixels = np.asarray(cells[start : start + chunk]).reshape(-1, 3).astype(np.float64) / 255.0
            self.n += len(pixels)
            self.total += pixels.sum(axis=0)
            self.squares += np.square(pixels).sum(axis=0)
        return self

    def result(self) -> tuple[list[float], list[float]]:
        n = max(1, self.n)
        mean = self.total / n
        std = np.sqrt(np.maximum(self.squares / n - np.square(mean), 0.0))
        return mean.tolist(), np.maximum(std, 1e-3).tolist()


def channel_statistics(cells: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1]) of uint8 cells (N, H, W, 3), computed chunk by chunk."""
    return ChannelStatistics().add(cells).result()


class CellEncoder:
    """Maps uint8 cells, cached with ``preprocessing``, to embeddings; ``meta`` says where the weights came from."""

    def __init__(
        self,
        encoder: nn.Module,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        preprocessing: Preprocessing,
        meta: dict[str, Any],
    ):
        self.encoder, self.prepare, self.preprocessing, self.meta = encoder.eval(), prepare, preprocessing, meta

    @property
    def input_size(self) -> int:
        return self.preprocessing.output_size

    @property
    def dim(self) -> int:
        return int(self.encoder.out_dim)  # type: ignore[arg-type]

    @torch.no_grad()
    def embed(self, cells: np.ndarray, batch: int | None = None, device: torch.device | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) float32, in batches (default: 512 cells at 64 px, fewer when larger),
        in eval mode."""
        if cells.shape[0] and cells.shape[1] != self.input_size:
            raise ValueError(f"this encoder takes {self.input_size} px cells, got {cells.shape[1]} px")
        batch = batch or max(1, min(512, EMBED_PIXELS // (self.input_size * self.input_size)))
        device = device or default_device()
        self.encoder.to(device)
        prepare = self.prepare.to(device) if isinstance(self.prepare, nn.Module) else self.prepare
        out = [
            self.encoder(prepare(torch.from_numpy(np.array(cells[i : i + batch])).to(device))).float().cpu()
            for i in range(0, cells.shape[0], batch)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    def identity(self) -> str:
        """A hash of what decides the embeddings: the weights, the input normalisation and preprocessing."""
        h = hashlib.sha256(f"{self.meta.get('method')}|{self.preprocessing}\n".encode())
        if not isinstance(self.prepare, nn.Module):
            raise TypeError("an encoder's input preparation must be an nn.Module to be identified")
        for module in (self.encoder, self.prepare):
            for name, tensor in module.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not isinstance(self.prepare, ChannelNormalise):
            raise ValueError("only encoders with channel normalisation are saved on their own")
        save_tensors(self.encoder.state_dict(), directory / ENCODER_WEIGHTS, "encoder")
        write_json(
            directory / ENCODER_META,
            {
                **self.meta,
                "input_size": self.input_size,
                "image": {"size": self.preprocessing.size, "crop": self.preprocessing.crop},
                "mean": self.prepare.mean.flatten().tolist(),
                "std": self.prepare.std.flatten().tolist(),
            },
        )

    @staticmethod
    def is_saved_in(path: str | Path) -> bool:
        path = Path(path)
        return ((path.parent if path.is_file() else path) / ENCODER_META).is_file()

    @classmethod
    def load(cls, path: str | Path) -> CellEncoder:
        """From a pre-training folder (``encoder.pt`` + ``encoder.json``, or the path of ``encoder.pt``)."""
        path = Path(path)
        directory = path.parent if path.is_file() else path
        if not (directory / ENCODER_META).is_file():
            raise FileNotFoundError(f"{path}: no {ENCODER_META} here; give a folder written by `smearmil ssl pretrain`")
        try:
            meta = json.loads((directory / ENCODER_META).read_text(encoding="utf-8"))
            encoder = EncoderConfig.model_validate(meta["encoder"]).build(meta["input_size"])
            image = meta.get("image") or {"size": meta["input_size"], "crop": None}
            prepare, preprocessing = (
                ChannelNormalise(meta["mean"], meta["std"]),
                Preprocessing(image["size"], image["crop"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as error:  # JSON, schema, a field
            what = f"{type(error).__name__}: {error}"
            raise ValueError(
                f"{directory / ENCODER_META} is damaged or not smearmil's ({what}); pre-train the encoder again"
            ) from None
        load_state(
            encoder, load_tensors(directory / ENCODER_WEIGHTS, "encoder checkpoint"), directory / ENCODER_WEIGHTS
        )
        return cls(encoder, prepare, preprocessing, meta)

    @classmethod
    def random(cls, config: EncoderConfig, preprocessing: Preprocessing, seed: int = 0) -> CellEncoder:
        """A randomly initialised encoder (the baseline every pre-training must beat); placeholder channel
        statistics until :meth:`calibrated` sets those of real cells."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            encoder = config.build(preprocessing.output_size)
        return cls(
            encoder,
            ChannelNormalise([0.5] * 3, [0.25] * 3),
            preprocessing,
            {"method": "random", "encoder": config.model_dump(), "seed": seed, "calibrated": False},
        )

    def calibrated(
        self, cache: ImageCache, patients: Sequence[str] | None = None, per_patient: int = 50
    ) -> CellEncoder:
        """A random encoder standardised with the channel statistics of ``patients``' cells (default: all it
        will embed), as a pre-trained one is with those of its training cells; other encoders unchanged."""
        if self.meta.get("method") != "random" or self.meta.get("calibrated"):
            return self
        statistics = ChannelStatistics()
        for p in patients or cache.patient_ids:
            statistics.add(cache.read(cache.rows(p)[:per_patient]))
        mean, std = statistics.result()
        return CellEncoder(
            self.encoder, ChannelNormalise(mean, std), self.preprocessing, {**self.meta, "calibrated": True}
        )


def extract_features(
    encoder: CellEncoder,
    cohort: Cohort,
    cache: ImageCache,
    out: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    device: torch.device | None = None,
) -> FeatureStore:
    """Embed every cached cell of ``cohort`` (on ``device``, default: the GPU if any) and store the embeddings
    per patient in ``out`` (a folder the tool did not write is refused; features of the same encoder and
    cells are reused)."""
    if cache.preprocessing != encoder.preprocessing:
        raise ValueError(f"the cache was made with {cache.preprocessing}; this encoder takes {encoder.preprocessing}")
    encoder = encoder.calibrated(cache)
    embed = partial(encoder.embed, device=device)
    return FeatureStore.write(out, cohort, cache, embed, encoder.meta, progress, encoder.identity(), overwrite)
