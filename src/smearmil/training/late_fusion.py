"""Late fusions of an image expert and an attribute expert, fitted on out-of-fold expert scores.

A fusion sees, per patient, each expert's class log-probabilities (``scores``), the encoded clinical
attributes and the mean of the patient's standardised cell features; it is fitted on the *out-of-fold*
scores of the training patients (each training patient scored by experts that did not see it), so
it learns how far to trust each expert on patients the experts have not memorised. Registered:

- ``attributes-only``, ``image-only``: one expert alone (a candidate when a fold chooses its fusion);
- ``avg``: Eq. 14, the mean of the two experts' scores (log-probabilities), nothing fitted (the same
  average as the end-to-end AVG model, ``models.fusion.average_scores``);
- ``stack``: a regularised logistic regression on the experts' scores (and the attributes), its
  penalty chosen by cross-validation inside the training patients: the robust choice for small cohorts;
- ``moe``: the paper's mixture of experts, P = g P_image + (1 - g) P_attributes, with the gate
  g = sigmoid(w . [projected mean cell feature, attributes]) trained on the frozen experts' scores (P2):
  the end-to-end MOE's gate and mixture (``models.fusion.ExpertGate``, ``mixture``).

A fusion saves what it fitted (``save(folder) -> dict`` for the predictor's ``experts.json``, ``load``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..models.fusion import ExpertGate, average_scores, mixture
from ..utils.checkpoints import load_state, load_tensors, save_tensors
from ..utils.registry import NoParams
from .config.components import FUSIONS, GateParams, StackParams
from .estimators import load_estimator, save_estimator

Scores = dict[str, np.ndarray]  # expert name -> (n, C) log-probabilities


def score_features(logp: np.ndarray) -> np.ndarray:
    """An expert's scores as regression inputs: the log-odds for two classes, centred log-probabilities
    for more."""
    return logp[:, 1:2] - logp[:, :1] if logp.shape[1] == 2 else logp - logp.mean(axis=1, keepdims=True)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Fusion:
    """Base class: ``fit`` on the training patients' out-of-fold scores, then ``combine`` any patients'."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: Any, seed: int = 0):
        self.params = params
        self.seed = seed

    def fit(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray, y: np.ndarray) -> Fusion:
        return self

    def combine(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """Class probabilities (n, C) and, per patient, what the fusion did (weights, gate)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def choices(self) -> dict[str, Any]:
        """What the fusion chose from the training patients (saved with each fold)."""
        return {}

    def save(self, folder: Path) -> dict[str, Any]:
        """Write what was fitted into ``folder``; returns what the predictor's description should hold."""
        return {}

    def load(self, folder: Path, meta: dict[str, Any]) -> None:
        """Restore what ``save`` wrote (on a fusion built with the same parameters)."""


@FUSIONS.register("avg")
class AverageFusion(Fusion):
    """Eq. 14: the mean of the experts' scores (log-probabilities), renormalised."""

    def combine(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        mean = average_scores(*(torch.as_tensor(s) for s in scores.values())).numpy()
        proba = softmax(mean)
        return proba, [{} for _ in range(len(proba))]


class _OneExpert(Fusion):
    """One expert's scores alone: as a candidate, it lets a fold conclude that fusing does not help."""

    expert: ClassVar[str]

    def combine(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        return softmax(scores[self.expert]), [{} for _ in range(len(attributes))]


@FUSIONS.register("attributes-only")
class AttributesOnly(_OneExpert):
    expert = "attributes"


@FUSIONS.register("image-only")
class ImageOnly(_OneExpert):
    expert = "image"


@FUSIONS.register("stack")
class StackingFusion(Fusion):
    """Logistic regression on [expert scores, attributes]; C chosen by log-loss in inner CV."""

    Params = StackParams

    def _inputs(self, scores: Scores, attributes: np.ndarray) -> tuple[np.ndarray, list[str]]:
        parts = [score_features(s) for s in scores.values()]
        names = [f"{e}" if p.shape[1] == 1 else f"{e}:{k}" for e, p in zip(scores, parts) for k in range(p.shape[1])]
        if self.params.attributes and attributes.shape[1]:
            parts.append(attributes)
            names += [f"attribute:{j}" for j in range(attributes.shape[1])]
        return np.hstack(parts), names

    def fit(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray, y: np.ndarray) -> Fusion:
        x, self.names_ = self._inputs(scores, attributes)
        weight = "balanced" if self.params.balanced else None
        folds = min(5, int(np.bincount(y).min()))
        best = self.params.Cs[0]
        if folds >= 2 and len(self.params.Cs) > 1:
            losses = []
            split = StratifiedKFold(folds, shuffle=True, random_state=self.seed)
            for c in self.params.Cs:
                loss = 0.0
                for a, b in split.split(x, y):
                    model = LogisticRegression(C=c, class_weight=weight, max_iter=5000).fit(x[a], y[a])
                    p = model.predict_proba(x[b])[np.arange(len(b)), np.searchsorted(model.classes_, y[b])]
                    loss -= float(np.log(np.clip(p, 1e-6, 1)).sum())
                losses.append(loss)
            best = self.params.Cs[int(np.argmin(losses))]
        self.C_ = best
        self.model_ = LogisticRegression(C=best, class_weight=weight, max_iter=5000).fit(x, y)
        return self

    def combine(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        x, _ = self._inputs(scores, attributes)
        proba = self.model_.predict_proba(x)
        if proba.shape[1] != 2:
            return proba, [{} for _ in range(len(x))]
        parts = x * self.model_.coef_[0]  # each input's share of the stack's log-odds
        return proba, [{f"stack_{n}": float(v) for n, v in zip(self.names_, row)} for row in parts]

    def save(self, folder: Path) -> dict[str, Any]:
        save_estimator(self.model_, folder / "model")
        return {"C": self.C_, "names": self.names_}

    def load(self, folder: Path, meta: dict[str, Any]) -> None:
        self.model_, self.C_, self.names_ = load_estimator(folder / "model"), meta["C"], list(meta["names"])

    def choices(self) -> dict[str, Any]:
        return {
            "C": self.C_,
            "intercept": [float(v) for v in np.ravel(self.model_.intercept_)],
            "coefficients": {n: [float(v) for v in self.model_.coef_[:, j]] for j, n in enumerate(self.names_)},
        }


@FUSIONS.register("moe")
class MixtureFusion(Fusion):
    """The gate of Eq. 15-18 over frozen experts: trained to maximise the mixture's likelihood."""

    Params = GateParams

    def _gate_inputs(self, attributes: np.ndarray, cells: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        c = (cells - self.cell_mean_) / self.cell_std_
        return torch.as_tensor(c, dtype=torch.float32), torch.as_tensor(attributes, dtype=torch.float32)

    def fit(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray, y: np.ndarray) -> Fusion:
        self.cell_mean_, self.cell_std_ = cells.mean(axis=0), cells.std(axis=0) + 1e-6
        c, a = self._gate_inputs(attributes, cells)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.gate_ = ExpertGate(c.shape[1], a.shape[1], self.params.projection)
        p_image, p_attr = (torch.as_tensor(np.exp(scores[k]), dtype=torch.float32) for k in ("image", "attributes"))
        target = torch.as_tensor(y)
        optimiser = torch.optim.Adam(self.gate_.parameters(), lr=self.params.lr, weight_decay=self.params.weight_decay)
        for _ in range(self.params.steps):
            g = self.gate_(c, a)
            p = mixture(g, p_image, p_attr)
            loss = -torch.log(p[torch.arange(len(target)), target].clamp_min(1e-6)).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return self

    def combine(self, scores: Scores, attributes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        with torch.no_grad():
            g = self.gate_(*self._gate_inputs(attributes, cells))
            experts = (torch.as_tensor(np.exp(scores[k])) for k in ("image", "attributes"))
            proba = mixture(g, *experts).numpy()
        gates = g.numpy()[:, 0]
        return proba / proba.sum(axis=1, keepdims=True), [{"gate_image_expert": float(v)} for v in gates]

    def save(self, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        state = {**self.gate_.state_dict(), "cell_mean": torch.as_tensor(self.cell_mean_)}
        state["cell_std"] = torch.as_tensor(self.cell_std_)
        save_tensors(state, folder / "gate.pt", "gate")
        return {
            "cells": int(len(self.cell_mean_)),
            "attributes": int(self.gate_.score.in_features - self.params.projection),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> None:
        state = load_tensors(folder / "gate.pt", "gate checkpoint")
        self.cell_mean_, self.cell_std_ = state.pop("cell_mean").numpy(), state.pop("cell_std").numpy()
        self.gate_ = ExpertGate(int(meta["cells"]), int(meta["attributes"]), self.params.projection)
        load_state(self.gate_, state, folder / "gate.pt")

    def choices(self) -> dict[str, Any]:
        return {
            "gate_weight": [round(float(v), 6) for v in self.gate_.score.weight.detach().ravel()],
            "gate_bias": round(float(self.gate_.score.bias.detach()[0]), 6),
            "projection": [[round(float(v), 6) for v in row] for row in self.gate_.project.weight.detach()],
        }
