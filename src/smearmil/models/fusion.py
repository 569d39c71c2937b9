"""Fusing the experts: their average (Eq. 14) and the mixture of experts with a gate (Eq. 15-18)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bags, MILModel, MILOutput, logits_from_probabilities, probabilities
from .experts import CNNModel, MLPModel


class AverageModel(MILModel):
    """Mean of the two experts' probabilities; the experts are trained separately."""

    def __init__(self, cnn: CNNModel, mlp: MLPModel):
        super().__init__()
        self.n_classes = cnn.n_classes
        self.cnn, self.mlp = cnn, mlp

    def forward(self, bags: Bags) -> MILOutput:
        image_out, attribute_out = self.cnn(bags), self.mlp(bags)
        p = (probabilities(image_out.logits, self.n_classes) + probabilities(attribute_out.logits, self.n_classes)) / 2
        extras = {"cnn_logits": image_out.logits, "mlp_logits": attribute_out.logits, **image_out.extras}
        return MILOutput(logits_from_probabilities(p, self.n_classes), image_out.weights, extras)


class MixtureOfExperts(MILModel):
    """pi = sigmoid(theta_G . [theta_A . p, a]); P = pi * P_CNN + (1 - pi) * P_MLP.

    ``p`` is the pooled cell embedding and ``a`` the patient's attributes. The logits returned are
    those of the mixture, so the standard loss is the mixture's negative log-likelihood (Eq. 18).
    With ``freeze_experts`` only the gate trains (paradigm P2).
    """

    def __init__(self, cnn: CNNModel, mlp: MLPModel, n_attributes: int, projection: int = 8,
                 freeze_experts: bool = False):
        super().__init__()
        self.n_classes = cnn.n_classes
        self.cnn, self.mlp = cnn, mlp
        self.project = nn.Linear(cnn.embed_dim, projection)
        self.gate = nn.Linear(projection + n_attributes, 1)
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
        pi = torch.sigmoid(self.gate(torch.cat([self.project(pooled), bags.attributes], dim=1)))
        p = pi * probabilities(cnn_logits, self.n_classes) + (1 - pi) * probabilities(mlp_logits, self.n_classes)
        extras = {"gate": pi[:, 0], "cnn_logits": cnn_logits, "mlp_logits": mlp_logits, "embedding": pooled}
        return MILOutput(logits_from_probabilities(p, self.n_classes), weights, extras)
