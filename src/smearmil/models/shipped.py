"""Cell encoders that ship with smearmil, as package data: named like torchvision's weights, read with a
checksum. ``weights/shipped.json`` lists each one (its SHA-256, what it learnt from, how to re-make it);
``weights/<name>/`` is a `smearmil ssl pretrain` folder (``encoder.pt`` + ``encoder.json``)."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

INDEX = "shipped.json"
DEFAULT_ENCODER = "smearmil-cells-v1"  # what ``cells: {source: pretrained}`` reads


def weights_folder() -> Path:
    return Path(str(resources.files(__package__).joinpath("weights")))


@cache
def shipped_encoders() -> dict[str, dict[str, Any]]:
    """Every shipped encoder by name: ``sha256`` of its weights, ``learnt_from``, ``command``, ``figures``."""
    index = weights_folder() / INDEX
    return json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}


def is_shipped(name: str | Path) -> bool:
    return str(name) in shipped_encoders()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_encoder_dir(name: str) -> Path:
    """The folder of shipped encoder ``name``, its weights checked against their checksum."""
    entry = shipped_encoders().get(name)
    if entry is None:
        shipped = ", ".join(shipped_encoders()) or "none in this install"
        raise ValueError(f"no shipped encoder named {name!r} (shipped: {shipped})")
    folder = weights_folder() / name
    weights = folder / "encoder.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: the shipped encoder {name} is missing; reinstall smearmil")
    if sha256_of(weights) != entry["sha256"]:
        raise ValueError(f"{weights}: its checksum is not the shipped one; reinstall smearmil")
    return folder
