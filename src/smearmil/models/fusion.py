"""Fusing the experts: their average (Eq. 14) and the mixture of experts with a gate (Eq. 15-18).

The gate (``ExpertGate``), the mixture (``mixture``) and the average of scores (``average_scores``) are
written once here: the end-to-end models below use them, and so do the late fusions of experts on
cell features (``training.late_fusion``).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .base import Bags, MILModel, MILOutput, logits_from_probabilities, probabilities
from .experts import CNNModel, MLPModel, build_cnn, build_mlp, initialised
from .kinds import MODELS, ModelDims, ModelKind, Stage
from .specs import ATTRIBUTES, IMAGES, AverageParams, MixtureParams, ModelConfig


class ExpertGate(nn.Module):
    """The weight of the image expert from the pooled cell embedding ``p`` and the patient's attributes
    ``a``: pi = sigmoid(theta_G . [theta_A . p, a]). ``paper=True`` is Eq. 15 as written: theta_A projects
    ``p`` to one number and neither layer has a bias; otherwise ``p`` is projected to ``projection``
    numbers and both layers have biases (smearmil's default, an option the paper does not have)."""

    def __init__(self, embed_dim: int, n_attributes: int, projection: int = 8, paper: bool = False):
        super().__init__()
        size = 1 if paper else projection
        self.project = nn.Linear(embed_dim, size, bias=not paper)
        self.score = nn.Linear(size + n_attributes, 1, bias=not paper)

    def forward(self, pooled: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.score(torch.cat([self.project(pooled), attributes], dim=1)))


def mixture(pi: torch.Tensor, p_image: torch.Tensor, p_attributes: torch.Tensor) -> torch.Tensor:
    """Eq. 16: P = pi P_image + (1 - pi) P_attributes (class probabilities, pi of shape (B, 1))."""
    return pi * p_image + (1 - pi) * p_attributes


def average_scores(*scores: torch.Tensor) -> torch.Tensor:
    """Eq. 14: the mean of the experts' scores (logits, or log-probabilities)."""
    return torch.stack(scores).mean(0)


class _Fusion(MILModel):
    """A model over a CNN expert (``cnn``) and an MLP expert (``mlp``)."""

    inputs = frozenset({IMAGES, ATTRIBUTES})
    cnn: CNNModel
    mlp: MLPModel

    def image_expert(self) -> CNNModel:
        return self.cnn

    def experts(self) -> dict[str, MILModel]:
        return {"cnn": self.cnn, "mlp": self.mlp}


class AverageModel(_Fusion):
    """The two experts, trained separately, averaged: their scores, as Eq. 14 of the paper (the default:
    P = sigmoid((s_CNN + s_MLP) / 2) for two classes, the soft-max of the mean logits for more), or their
    probabilities (``average="probabilities"``)."""

    def __init__(self, cnn: CNNModel, mlp: MLPModel, average: str = "scores"):
        super().__init__()
        if average not in ("scores", "probabilities"):
            raise ValueError(f"average must be scores or probabilities, got {average!r}")
        self.n_classes = cnn.n_classes
        self.cnn, self.mlp, self.average = cnn, mlp, average

    def forward(self, bags: Bags) -> MILOutput:
        image_out, attribute_out = self.cnn(bags), self.mlp(bags)
        extras = {"cnn_logits": image_out.logits, "mlp_logits": attribute_out.logits, **image_out.extras}
        if self.average == "scores":
            return MILOutput(average_scores(image_out.logits, attribute_out.logits), image_out.weights, extras)
        p = (probabilities(image_out.logits, self.n_classes) + probabilities(attribute_out.logits, self.n_classes)) / 2
        return MILOutput(logits_from_probabilities(p, self.n_classes), image_out.weights, extras)


class MixtureOfExperts(_Fusion):
    """pi = sigmoid(theta_G . [theta_A . p, a]); P = pi * P_CNN + (1 - pi) * P_MLP.

    ``p`` is the pooled cell embedding and ``a`` the patient's attributes. The logits returned are
    those of the mixture, so the standard loss is the mixture's negative log-likelihood (Eq. 18).
    With ``freeze_experts`` only the gate trains (paradigm P2).
    """

    def __init__(
        self,
        cnn: CNNModel,
        mlp: MLPModel,
        n_attributes: int,
        projection: int = 8,
        freeze_experts: bool = False,
        paper_gate: bool = False,
    ):
        super().__init__()
        self.n_classes = cnn.n_classes
        self.cnn, self.mlp = cnn, mlp
        self.gate = ExpertGate(cnn.embed_dim, n_attributes, projection, paper_gate)
        self.freeze_experts = freeze_experts
        if freeze_experts:
            for p in [*cnn.parameters(), *mlp.parameters()]:
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> MixtureOfExperts:
        super().train(mode)
        if self.freeze_experts:  # frozen experts keep their batch-norm statistics
            self.cnn.eval()
            self.mlp.eval()
        return self

    def forward(self, bags: Bags) -> MILOutput:
        pooled, weights = self.cnn.embed(bags)
        cnn_logits = self.cnn.classifier(self.cnn.dropout(pooled))
        mlp_logits = self.mlp(bags).logits
        pi = self.gate(pooled, bags.attributes)
        p = mixture(pi, probabilities(cnn_logits, self.n_classes), probabilities(mlp_logits, self.n_classes))
        extras = {"gate": pi[:, 0], "cnn_logits": cnn_logits, "mlp_logits": mlp_logits, "embedding": pooled}
        return MILOutput(logits_from_probabilities(p, self.n_classes), weights, extras)


def _experts(config: ModelConfig, dims: ModelDims, init: bool) -> list[Stage]:
    return [
        Stage("cnn", 1, lambda _: initialised(build_cnn(config, dims), config, init), "cnn expert"),
        Stage("mlp", 2, lambda _: build_mlp(config, dims), "mlp expert"),
    ]


@MODELS.register("avg")
class AverageKind(ModelKind):
    """The two experts trained separately, then averaged (no stage of its own)."""

    model = AverageModel
    stage_names = ("cnn", "mlp")
    Params = AverageParams

    def build(self, config: ModelConfig, dims: ModelDims) -> MILModel:
        return AverageModel(build_cnn(config, dims), build_mlp(config, dims), config.params.average)

    def stages(self, config: ModelConfig, dims: ModelDims, init: bool = True) -> list[Stage]:
        return _experts(config, dims, init)

    def assemble(self, trained: dict[str, MILModel], config: ModelConfig, dims: ModelDims) -> MILModel:
        return AverageModel(trained["cnn"], trained["mlp"], config.params.average)  # type: ignore[arg-type]


@MODELS.register("moe")
class MixtureKind(ModelKind):
    """P1: the mixture end to end from scratch; P2: each expert alone, then only the gate; P3: each expert
    alone, then all of it."""

    model = MixtureOfExperts
    stage_names = ("cnn", "mlp", "moe")
    Params = MixtureParams

    def build(self, config: ModelConfig, dims: ModelDims) -> MILModel:
        return self._mixture(build_cnn(config, dims), build_mlp(config, dims), config, dims)

    @staticmethod
    def _mixture(cnn: MILModel, mlp: MILModel, config: ModelConfig, dims: ModelDims) -> MixtureOfExperts:
        return MixtureOfExperts(
            cast(CNNModel, cnn),
            cast(MLPModel, mlp),
            dims.n_attributes,
            config.params.gate_projection,
            freeze_experts=config.params.paradigm == "P2",
            paper_gate=config.params.gate == "paper",
        )

    def stages(self, config: ModelConfig, dims: ModelDims, init: bool = True) -> list[Stage]:
        if config.params.paradigm == "P1":
            return [Stage("moe", 0, lambda _: initialised(self.build(config, dims), config, init), "mixture")]
        last = "gate" if config.params.paradigm == "P2" else "mixture, fine-tuned"  # P2: the experts frozen
        return [
            *_experts(config, dims, init),
            Stage("moe", 3, lambda trained: self._mixture(trained["cnn"], trained["mlp"], config, dims), last),
        ]
