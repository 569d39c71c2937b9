"""Validated self-supervised pre-training config (``kind: ssl`` presets: cpu-ssl, cpu-ssl-swav, cpu-ssl-dino)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from ...models.config import EncoderConfig
from ..config import ImageConfig, Strict, merge_dicts, read_yaml_config
from .views import ViewConfig

Method = Literal["simclr", "swav", "dino"]


class ViewsConfig(Strict):
    """Augmented views; ``None`` means the method's default (local crops: SimCLR 0, SwAV and DINO 4;
    solarisation of DINO's second global view: 0.2)."""

    local_size: int | None = Field(None, ge=8, description="side of local crops (default: half the input)")
    n_local: int | None = Field(None, ge=0)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)
    jitter: float = Field(0.4, ge=0)
    hue: float = Field(0.05, ge=0, le=0.5)
    blur: float = Field(0.5, ge=0, le=1)
    grayscale: float = Field(0.2, ge=0, le=1)
    solarize: float | None = Field(None, ge=0, le=1)

    def resolve(self, method: Method, size: int) -> ViewConfig:
        return ViewConfig(
            global_size=size, local_size=self.local_size or max(8, size // 2),
            n_local=self.n_local if self.n_local is not None else (0 if method == "simclr" else 4),
            global_scale=self.global_scale, local_scale=self.local_scale, jitter=self.jitter, hue=self.hue,
            blur=self.blur, grayscale=self.grayscale,
            solarize=self.solarize if self.solarize is not None else (0.2 if method == "dino" else 0.0),
        )


class SimCLRConfig(Strict):
    temperature: float = Field(0.2, gt=0)
    hidden: int = Field(256, ge=1)
    out_dim: int = Field(64, ge=1)


class SwAVConfig(Strict):
    temperature: float = Field(0.1, gt=0)
    epsilon: float = Field(0.05, gt=0)
    sinkhorn_iterations: int = Field(3, ge=1)
    prototypes: int = Field(32, ge=2)
    hidden: int = Field(256, ge=1)
    out_dim: int = Field(64, ge=1)
    queue_length: int = Field(0, ge=0, description="embeddings of earlier batches used for the codes (0: off)")
    queue_start_epoch: int = Field(2, ge=0)
    freeze_prototypes_epochs: int = Field(1, ge=0)


class DINOConfig(Strict):
    out_dim: int = Field(256, ge=2)
    hidden: int = Field(256, ge=1)
    bottleneck: int = Field(64, ge=1)
    student_temperature: float = Field(0.1, gt=0)
    teacher_temperature: float = Field(0.04, gt=0)
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="EMA momentum at the start (cosine to 1)")
    center_momentum: float = Field(0.9, ge=0, le=1)


class SSLConfig(Strict):
    kind: Literal["ssl"] = "ssl"
    name: str = "custom-ssl"
    seed: int = 0
    method: Method = "simclr"
    image: ImageConfig = ImageConfig(size=64)
    encoder: EncoderConfig = EncoderConfig(k=16)
    views: ViewsConfig = ViewsConfig()
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate after warm-up (cosine decay)")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(2, ge=0)
    simclr: SimCLRConfig = SimCLRConfig()
    swav: SwAVConfig = SwAVConfig()
    dino: DINOConfig = DINOConfig()
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_workers: int = Field(0, ge=0)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @property
    def view_config(self) -> ViewConfig:
        return self.views.resolve(self.method, self.image.input_size)


def _raw(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name_or_path in seen:
        raise ValueError(f"config {name_or_path!r} includes itself through 'base'")
    raw, where = read_yaml_config(name_or_path)
    if raw.get("kind") != "ssl":
        raise ValueError(f"{where} is not a pre-training config (kind: ssl); try cpu-ssl, cpu-ssl-swav or cpu-ssl-dino")
    base = raw.pop("base", None)
    raw.setdefault("name", Path(name_or_path).stem if Path(name_or_path).suffix else name_or_path)
    return merge_dicts(_raw(str(base), (*seen, name_or_path)), raw) if base else raw


def load_ssl_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> SSLConfig:
    """An SSLConfig from a YAML file or preset, with nested overrides (e.g. ``{"method": "dino"}``)."""
    raw = merge_dicts(_raw(name_or_path), overrides or {})
    try:
        return SSLConfig.model_validate(raw)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ValueError(f"config {name_or_path!r} is not valid:\n" + "\n".join(lines)) from None
