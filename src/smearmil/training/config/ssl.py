"""Validated self-supervised pre-training config (``kind: ssl`` presets: cpu-ssl, cpu-ssl-swav, cpu-ssl-dino)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ...models.specs import EncoderConfig
from ...utils.config_files import dump_yaml, load_config_file
from ...utils.registry import Component, Registry
from .components import SSL_METHODS
from .run import ImageConfig, Strict

if TYPE_CHECKING:
    from ..ssl.methods import SSLMethod
    from ..ssl.views import ViewConfig


class ViewsConfig(Strict):
    """Augmented views; ``None`` means the method's default (its ``local_crops`` and ``solarize``:
    SimCLR 0 and 0, SwAV 4 and 0, DINO 4 and 0.2 on the second global view)."""

    local_size: int | None = Field(None, ge=8, description="side of local crops (default: half the input)")
    n_local: int | None = Field(None, ge=0)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)
    jitter: float = Field(0.4, ge=0)
    hue: float = Field(0.05, ge=0, le=0.5)
    blur: float = Field(0.5, ge=0, le=1)
    grayscale: float = Field(0.2, ge=0, le=1)
    solarize: float | None = Field(None, ge=0, le=1)

    def resolve(self, method: type[SSLMethod], size: int) -> ViewConfig:
        from ..ssl.views import ViewConfig

        return ViewConfig(
            global_size=size,
            local_size=self.local_size or max(8, size // 2),
            n_local=self.n_local if self.n_local is not None else method.local_crops,
            global_scale=self.global_scale,
            local_scale=self.local_scale,
            jitter=self.jitter,
            hue=self.hue,
            blur=self.blur,
            grayscale=self.grayscale,
            solarize=self.solarize if self.solarize is not None else method.solarize,
        )


class MethodConfig(Component):
    """``{name: <SSL method>, **its parameters}``, e.g. ``{name: swav, prototypes: 32}`` (or just ``swav``)."""

    registry: ClassVar[Registry[Any]] = SSL_METHODS
    name: str = "simclr"


class SSLConfig(Strict):
    kind: Literal["ssl"] = "ssl"
    name: str = "custom-ssl"
    seed: int = 0
    method: MethodConfig = Field(default_factory=MethodConfig)
    image: ImageConfig = ImageConfig(size=64)
    encoder: EncoderConfig = EncoderConfig(k=16)
    views: ViewsConfig = ViewsConfig()
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate after warm-up (cosine decay)")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(2, ge=0)
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    accelerator: str = "auto"
    devices: int | str = Field(1, description="devices (one process each with strategy ddp); auto: every GPU")
    strategy: str = Field("auto", description="Lightning strategy; ddp: one process per device (gloo on CPU)")
    num_nodes: int = Field(1, ge=1, description="hosts of a DDP run (e.g. SLURM --nodes)")
    sync_batchnorm: bool = Field(
        False,
        description="GPUs, several processes: batch norm statistics over every process's batch (SimCLR's "
        "global batch norm) instead of each process's own",
    )
    num_workers: int = Field(0, ge=0)
    cell_labels: str | None = Field(
        None,
        description="the single-cell encoder's labelled cells: a single-cell data set (e.g. blood-cells-dev); "
        "default: the cell-type folders of the training patients",
    )
    cell_epochs: int = Field(10, ge=1, description="epochs of the single-cell (supervised on cell types) encoder")

    def to_yaml(self) -> str:
        return dump_yaml(self)

    @property
    def method_class(self) -> type[SSLMethod]:
        return SSL_METHODS.get(self.method.name)

    @property
    def view_config(self) -> ViewConfig:
        return self.views.resolve(self.method_class, self.image.input_size)

    def with_method(self, name: str) -> SSLConfig:
        """This config with another method (its own defaults), or unchanged if it already uses ``name``."""
        if name == self.method.name:
            return self
        return self.model_copy(update={"method": MethodConfig(name=name)})

    def build_method(self, encoder: Any) -> SSLMethod:
        return self.method_class(encoder, self.method.params, self.view_config.n_global)


def load_ssl_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> SSLConfig:
    """An SSLConfig from a YAML file or preset, with nested overrides (e.g. ``{"method": "dino"}``)."""
    return load_config_file(name_or_path, SSLConfig, "ssl", overrides)
