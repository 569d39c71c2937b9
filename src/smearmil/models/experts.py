"""The two experts of the paper: a CNN over the cells with bag pooling, and an MLP on attributes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .base import Bags, MILModel, MILOutput, n_outputs
from .cell_encoder import CellEncoder
from .kinds import MODELS, ModelDims, ModelKind, Stage
from .specs import ATTRIBUTES, EncoderConfig, MLPParams, ModelConfig, PoolingConfig

INFERENCE_PIXELS = 32 * 224 * 224  # cells per inference chunk: 32 at 224 px, 392 at 64 px


class CNNModel(MILModel):
    """Encoder on every cell, permutation-invariant pooling, linear classifier (Eq. 8-10)."""

    def __init__(
        self, encoder: nn.Module, pooling: PoolingConfig, n_classes: int, dropout: float = 0.0, chunk: int = 1024
    ):
        super().__init__()
        self.n_classes = n_classes
        self.encoder = encoder
        self.embed_dim: int = encoder.out_dim  # type: ignore[assignment]
        self.pooling = pooling.build(self.embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embed_dim, n_outputs(n_classes))
        self.chunk = chunk

    def image_expert(self) -> CNNModel:
        return self

    def encode(
        self, images: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Cell embeddings. In inference, chunk by chunk (``prepare`` turns raw cells into the encoder's
        input per chunk), so that a bag of thousands of cells at any size fits in bounded memory."""
        if self.training and prepare is None:
            return self.encoder(images)
        side = images.shape[-2] if prepare is None else images.shape[1]
        step = self.chunk if self.training else max(1, INFERENCE_PIXELS // (side * side))
        parts = (images[i : i + step] for i in range(0, images.shape[0], step))  # one chunk in memory at a time
        encoded = [self.encoder(prepare(part) if prepare is not None else part) for part in parts]
        return encoded[0] if len(encoded) == 1 else torch.cat(encoded)

    def embed(self, bags: Bags) -> tuple[torch.Tensor, torch.Tensor]:
        if bags.images is None:
            raise ValueError("the CNN expert needs cell images")
        return self.pooling(self.encode(bags.images, bags.prepare), bags.segments, bags.n_bags)

    def forward(self, bags: Bags) -> MILOutput:
        pooled, weights = self.embed(bags)
        return MILOutput(self.classifier(self.dropout(pooled)), weights, {"embedding": pooled})


class MLPModel(MILModel):
    """Attributes -> a few sigmoid hidden units -> output (Eq. 11-13)."""

    inputs = frozenset({ATTRIBUTES})

    def __init__(self, n_attributes: int, n_classes: int, hidden: int = 2):
        super().__init__()
        if n_attributes < 1:
            raise ValueError("the MLP expert needs at least one clinical attribute")
        self.n_classes = n_classes
        self.net = nn.Sequential(nn.Linear(n_attributes, hidden), nn.Sigmoid(), nn.Linear(hidden, n_outputs(n_classes)))

    def forward(self, bags: Bags) -> MILOutput:
        return MILOutput(self.net(bags.attributes), None)


def load_pretrained_encoder(encoder: nn.Module, config: EncoderConfig) -> nn.Module:
    """Copy the weights of the pre-trained encoder ``config.init`` names into ``encoder`` (fine-tuning)."""
    if config.init is None:
        return encoder
    try:
        pretrained = CellEncoder.load(config.init)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"model.encoder.init: {err}; give a `smearmil ssl pretrain` folder") from err
    mine = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in pretrained.encoder.state_dict().items()}
    if mine != theirs:
        raise ValueError(
            f"model.encoder.init: {config.init} holds a {pretrained.meta.get('encoder')} encoder; set "
            "model.encoder to the same name and parameters to fine-tune it"
        )
    encoder.load_state_dict(pretrained.encoder.state_dict())
    return encoder


def initialised(model: MILModel, config: ModelConfig, init: bool = True) -> MILModel:
    """``model`` with its image expert's encoder loaded from ``config.encoder.init`` (when ``init`` and set)."""
    expert = model.image_expert()
    if init and expert is not None:
        load_pretrained_encoder(expert.encoder, config.encoder)
    return model


def build_cnn(config: ModelConfig, dims: ModelDims) -> CNNModel:
    return CNNModel(config.encoder.build(dims.input_size), config.pooling, dims.n_classes, config.dropout)


def build_mlp(config: ModelConfig, dims: ModelDims) -> MLPModel:
    return MLPModel(dims.n_attributes, dims.n_classes, config.params.mlp_hidden)


@MODELS.register("cnn")
class CNNKind(ModelKind):
    """Images only: the CNN expert, trained in one stage."""

    model = CNNModel
    stage_names = ("cnn",)

    def build(self, config: ModelConfig, dims: ModelDims) -> MILModel:
        return build_cnn(config, dims)

    def stages(self, config: ModelConfig, dims: ModelDims, init: bool = True) -> list[Stage]:
        return [Stage("cnn", 0, lambda _: initialised(build_cnn(config, dims), config, init))]


@MODELS.register("mlp")
class MLPKind(ModelKind):
    """Attributes only: the MLP expert, trained in one stage."""

    model = MLPModel
    stage_names = ("mlp",)
    Params = MLPParams

    def build(self, config: ModelConfig, dims: ModelDims) -> MILModel:
        return build_mlp(config, dims)

    def stages(self, config: ModelConfig, dims: ModelDims, init: bool = True) -> list[Stage]:
        return [Stage("mlp", 0, lambda _: build_mlp(config, dims))]
