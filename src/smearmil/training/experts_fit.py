"""Fit an image expert, an attribute expert and their fusion on one fold's training patients.

The experts are fitted on all training patients; the fusion on their out-of-fold scores (each training
patient scored by experts fitted without it, ``inner_folds`` folds). Where the config lists candidates,
the same out-of-fold scores choose among them, and with ``threshold: out_of_fold`` the cut on P(class 1)
is where the final expert's or fusion's out-of-fold scores have their best balanced accuracy. Nothing here
sees a test patient: ``fit_experts`` is given the training patients only, and ``predict`` scores whichever
patients it is asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from ..baselines import BASELINES
from ..data.attributes import AttributeEncoder
from ..data.cohort import Cohort
from ..models.contributions import feature_explanation
from ..models.feature_mil import FeatureMIL
from ..utils.atomic import write_json
from ..utils.checkpoints import load_state, load_tensors, save_tensors
from ..utils.progress import Steps
from ..utils.scoring import best_threshold
from ..utils.scoring import scores as metric_scores
from .config.experts import ENSEMBLE, HEAD, ExpertsConfig, ExpertSpec
from .estimators import load_estimator, own, save_estimator
from .heads import HeadConfig, fit_head, head_predictions
from .late_fusion import FUSIONS, Fusion

BagsOf = Callable[[Sequence[str]], list[np.ndarray]]  # patient ids -> their (n_cells, d) features


@own("head")
class HeadEstimator:
    """A MIL head (any pooling) on cached features with scikit-learn's ``fit``/``predict_proba``."""

    def __init__(self, n_classes: int, seed: int = 0, **params: Any):
        self.n_classes, self.seed, self.config = n_classes, seed, HeadConfig.model_validate(params)

    def fit(self, bags: Sequence[np.ndarray], y: np.ndarray) -> HeadEstimator:
        self.classes_ = np.arange(self.n_classes)
        self.model_ = fit_head(bags, np.asarray(y, dtype=np.int64), self.n_classes, self.config, self.seed)
        return self

    def predict_proba(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return head_predictions(self.model_, bags)[0]

    def cell_contributions(self, bag: np.ndarray) -> np.ndarray:
        """Each cell's share of every logit column (n, columns): the pooling's exact decomposition."""
        with torch.no_grad():
            return feature_explanation(self.model_, torch.from_numpy(np.asarray(bag, np.float32)))[0]

    def save(self, folder: Path) -> dict[str, Any]:
        save_tensors(self.model_.state_dict(), folder / "head.pt", "head")
        return {
            "n_classes": self.n_classes,
            "in_dim": int(self.model_.mean.shape[0]),
            "config": self.config.model_dump(),
        }

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> HeadEstimator:
        head = cls(int(meta["n_classes"]), **meta["config"])
        c = head.config
        head.model_ = FeatureMIL(int(meta["in_dim"]), head.n_classes, c.pooling, c.embed_dim, c.dropout)
        load_state(head.model_, load_tensors(folder / "head.pt", "head checkpoint"), folder / "head.pt")
        head.model_.eval()
        head.classes_ = np.arange(head.n_classes)
        return head


@own("ensemble")
class EnsembleEstimator:
    """Several experts fitted on the same patients, their log-probabilities averaged (a normalised
    geometric mean): an ensemble in place of choosing one candidate on few patients."""

    def __init__(self, members: Sequence[ExpertSpec], n_classes: int, seed: int = 0):
        self.members, self.n_classes, self.seed = list(members), n_classes, seed

    def fit(self, x: Any, y: np.ndarray) -> EnsembleEstimator:
        self.classes_ = np.arange(self.n_classes)
        self.models_ = [build_expert(m, self.n_classes, self.seed + k).fit(x, y) for k, m in enumerate(self.members)]
        return self

    def predict_proba(self, x: Any) -> np.ndarray:
        logp = np.mean([_log_proba(m, x, self.n_classes) for m in self.models_], axis=0)
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def cell_contributions(self, bag: np.ndarray) -> np.ndarray | None:
        """The members' contributions averaged (the ensemble's log-odds are the mean of theirs)."""
        found = [cell_contributions(m, bag) for m in self.models_]
        known = [f for f in found if f is not None]
        return np.mean(known, axis=0) if len(known) == len(found) else None

    def save(self, folder: Path) -> dict[str, Any]:
        for k, member in enumerate(self.models_):
            save_estimator(member, folder / f"member-{k}")
        return {"n_classes": self.n_classes, "members": [m.model_dump() for m in self.members]}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> EnsembleEstimator:
        members = [ExpertSpec.model_validate(m) for m in meta["members"]]
        found = cls(members, int(meta["n_classes"]))
        found.models_ = [load_estimator(folder / f"member-{k}") for k in range(len(members))]
        found.classes_ = np.arange(found.n_classes)
        return found


def explain_cells(
    predictions: Sequence[Any], model: Any, bags: Sequence[np.ndarray], cohort: Cohort, cache: Any
) -> None:
    """Set each prediction's per-cell contributions to ``model``'s score (and their files and types), where
    the image expert decomposes its score over the cells of ``bags`` (one per prediction)."""
    from .predictor import cell_info

    for prediction, bag in zip(predictions, bags):
        prediction.contributions = cell_contributions(model, bag)
        if prediction.contributions is not None:
            prediction.files, prediction.cell_types = cell_info(cohort, cache, prediction.id)


def cell_contributions(model: Any, bag: np.ndarray) -> np.ndarray | None:
    """Each cell's share of an image expert's logits (n, columns: one for two classes, else one per class
    relative to the others), where the expert decomposes exactly; None where it does not."""
    if hasattr(model, "cell_contributions"):
        return model.cell_contributions(bag)
    if hasattr(model, "cell_scores"):  # instance-level MIL: the patient's score is the mean of its cells'
        s = np.asarray(model.cell_scores(bag), dtype=np.float64)
        s = s[:, None] if s.ndim == 1 else s - s.mean(axis=1, keepdims=True)
        return s / len(s)
    return None


def build_expert(spec: ExpertSpec, n_classes: int, seed: int) -> Any:
    if spec.name == HEAD:
        return HeadEstimator(n_classes, seed, **spec.params)
    if spec.name == ENSEMBLE:
        return EnsembleEstimator(spec.members, n_classes, seed)
    return BASELINES.build(spec.name, seed=seed, **spec.params)


def _log_proba(model: Any, x: Any, n_classes: int) -> np.ndarray:
    p = np.asarray(model.predict_proba(x), dtype=np.float64)
    if p.shape[1] != n_classes:  # a class absent from an inner training split
        full = np.full((len(p), n_classes), 1e-6)
        full[:, np.asarray(model.classes_, dtype=np.int64)] = p
        p = full
    return np.log(np.clip(p, 1e-6, 1.0))


@dataclass
class FittedExperts:
    """The experts and the fusion of one fold, and what they chose from its training patients."""

    config: ExpertsConfig
    n_classes: int
    encoder: AttributeEncoder
    image: Any = None
    attributes: Any = None
    fusion: Fusion | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    threshold_source: str = "fixed"
    training_scores: np.ndarray | None = None  # out-of-fold P(class 1) of the training patients, if it chose one

    def scores(self, cohort: Cohort, ids: Sequence[str], bags_of: BagsOf | None) -> dict[str, np.ndarray]:
        out = {}
        if self.image is not None and bags_of is not None:
            out["image"] = _log_proba(self.image, bags_of(ids), self.n_classes)
        if self.attributes is not None:
            out["attributes"] = _log_proba(self.attributes, self.encoder.transform(cohort, ids), self.n_classes)
        return out

    def predict(self, cohort: Cohort, ids: Sequence[str], bags_of: BagsOf | None) -> tuple[np.ndarray, list[dict]]:
        """Class probabilities (n, C) and per patient each expert's probabilities and the fusion's weights."""
        scores = self.scores(cohort, ids, bags_of)
        details = [{f"p_{expert}": float(np.exp(s[k, -1])) for expert, s in scores.items()} for k in range(len(ids))]
        if self.fusion is None:
            return np.exp(next(iter(scores.values()))), details
        proba, fused = self.fusion.combine(scores, self.encoder.transform(cohort, ids), _mean_cells(bags_of, ids))
        return proba, [{**d, **f} for d, f in zip(details, fused)]

    def save(self, folder: Path) -> None:
        """The experts (``image-expert/``, ``attribute-expert/``), the fusion (``fusion/``) and ``experts.json``."""
        if self.image is not None:
            save_estimator(self.image, folder / "image-expert")
        if self.attributes is not None:
            save_estimator(self.attributes, folder / "attribute-expert")
        fusion = None
        if self.fusion is not None:
            name = str(self.chosen["fusion"])
            fusion = {"name": name, "params": self.fusion.params.model_dump(), **self.fusion.save(folder / "fusion")}
        write_json(
            folder / EXPERTS_META,
            {
                "config": self.config.model_dump(mode="json"),
                "n_classes": self.n_classes,
                "encoder": self.encoder.to_dict(),
                "fusion": fusion,
                "chosen": self.chosen,
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "training_scores": None if self.training_scores is None else self.training_scores.tolist(),
            },
        )

    @classmethod
    def load(cls, folder: Path) -> FittedExperts:
        meta = json.loads((folder / EXPERTS_META).read_text(encoding="utf-8"))
        found = cls(
            ExpertsConfig.model_validate(meta["config"]),
            int(meta["n_classes"]),
            AttributeEncoder.from_dict(meta["encoder"]),
            chosen=meta["chosen"],
            threshold=float(meta["threshold"]),
            threshold_source=str(meta["threshold_source"]),
        )
        if meta.get("training_scores") is not None:
            found.training_scores = np.asarray(meta["training_scores"])
        if (folder / "image-expert").is_dir():
            found.image = load_estimator(folder / "image-expert")
        if (folder / "attribute-expert").is_dir():
            found.attributes = load_estimator(folder / "attribute-expert")
        if meta.get("fusion"):
            spec = meta["fusion"]
            found.fusion = FUSIONS.build(spec["name"], FUSIONS.params(spec["name"]).model_validate(spec["params"]))
            found.fusion.load(folder / "fusion", spec)
        return found


EXPERTS_META = "experts.json"


def _mean_cells(bags_of: BagsOf | None, ids: Sequence[str]) -> np.ndarray:
    if bags_of is None:
        return np.zeros((len(ids), 0))
    return np.stack([np.nan_to_num(b).mean(axis=0) for b in bags_of(ids)])


def selection_score(y: np.ndarray, logp: np.ndarray, by: str) -> float:
    """How good out-of-fold log-probabilities are (higher is better): minus the log-loss, the ROC-AUC
    or the balanced accuracy."""
    if by == "log_loss":
        return float(logp[np.arange(len(y)), y].mean())
    value = metric_scores(y, np.exp(logp))[by]
    return float(value) if np.isfinite(value) else -np.inf


class _Training:
    """One fold's training patients: their labels, inner folds, and expert fits on any subset."""

    def __init__(self, cohort: Cohort, ids: Sequence[str], config: ExpertsConfig, bags_of: BagsOf | None, seed: int):
        self.cohort, self.ids, self.config, self.bags_of, self.seed = cohort, list(ids), config, bags_of, seed
        self.y = cohort.labels(self.ids)
        self.n_classes = len(cohort.class_names)
        self.folds = min(config.inner_folds, int(np.bincount(self.y)[np.unique(self.y)].min()))

    def inner_splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.folds < 2:
            raise ValueError(
                "choosing a fusion, a threshold (threshold: out_of_fold) or among candidates needs at least 2 "
                "training patients of every class; give fewer folds, or threshold: fixed and one of each"
            )
        split = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        return list(split.split(np.zeros(len(self.y)), self.y))

    def encoder(self, ids: Sequence[str]) -> AttributeEncoder:
        encoder = AttributeEncoder(self.config.attributes, self.config.log_attributes, self.config.data.missing_policy)
        return encoder.fit(self.cohort, list(ids)) if self.config.attribute_experts or self.config.fusions else encoder

    def fit(self, spec: ExpertSpec, kind: str, ids: Sequence[str], encoder: AttributeEncoder) -> Any:
        model = build_expert(spec, self.n_classes, self.seed)
        y = self.cohort.labels(list(ids))
        return model.fit(self.inputs(kind, ids, encoder), y)

    def inputs(self, kind: str, ids: Sequence[str], encoder: AttributeEncoder) -> Any:
        if kind == "image":
            assert self.bags_of is not None
            return self.bags_of(ids)
        return encoder.transform(self.cohort, list(ids))

    def out_of_fold(
        self, spec: ExpertSpec, kind: str, splits: list[tuple[np.ndarray, np.ndarray]], steps: Steps
    ) -> np.ndarray:
        """Each training patient's log-probabilities from the expert fitted without its inner fold."""
        oof = np.zeros((len(self.ids), self.n_classes))
        for fold, (a, b) in enumerate(splits):
            steps.advance(0, f"inner CV {fold + 1}/{len(splits)} · {EXPERT_NAMES[kind]} {spec.label}")
            inner, held = [self.ids[i] for i in a], [self.ids[i] for i in b]
            encoder = self.encoder(inner)
            oof[b] = _log_proba(self.fit(spec, kind, inner, encoder), self.inputs(kind, held, encoder), self.n_classes)
            steps.advance()
        return oof


EXPERT_NAMES = {"image": "image expert", "attributes": "attribute expert"}


def _choose(candidates: Sequence[Any], values: dict[str, float]) -> tuple[Any, dict[str, Any]]:
    best = max(candidates, key=lambda c: values[c.label])  # the first listed wins a tie
    return best, {"chosen": best.label, "scores": {k: round(v, 6) for k, v in values.items()}}


def fit_experts(
    cohort: Cohort,
    train_ids: Sequence[str],
    config: ExpertsConfig,
    bags_of: BagsOf | None,
    seed: int = 0,
    progress: bool = True,
) -> FittedExperts:
    """Experts and fusion fitted on ``train_ids`` only.

    Where a config lists candidates (image experts, attribute experts, fusions), each is judged on the
    out-of-fold scores of ``train_ids`` (``select_by``) and the best is kept; a fusion is fitted on the
    chosen experts' out-of-fold scores and judged by a further CV over them, which also gives the scores
    that choose an ``out_of_fold`` threshold. Progress counts the fits (``experts: 12/38 fits``), naming the
    inner fold and the candidate of each."""
    data = _Training(cohort, train_ids, config, bags_of, seed)
    images = config.image_experts if bags_of is not None else []
    experts = {"image": images, "attributes": config.attribute_experts}
    chosen: dict[str, Any] = {}
    picked: dict[str, ExpertSpec] = {kind: specs[0] for kind, specs in experts.items() if specs}
    oof: dict[str, np.ndarray] = {}
    tuned = config.threshold == "out_of_fold"
    config.check_classes(data.n_classes)
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    inner = tuned or bool(config.fusions) or any(len(specs) > 1 for specs in experts.values())
    judged_fusions = config.fusions if tuned or len(config.fusions) > 1 else []
    folds = data.folds if inner else 0
    fits = folds * (len(images) + len(config.attribute_experts) + len(judged_fusions))
    fits += len(picked) + bool(config.fusions)  # the final experts and fusion, on every training patient
    with Steps("experts", fits, progress, unit="fits") as steps:
        if inner:
            splits = data.inner_splits()
            chosen["inner_folds"] = len(splits)
            for kind, specs in experts.items():
                if not specs:
                    continue
                candidates = {spec.label: data.out_of_fold(spec, kind, splits, steps) for spec in specs}
                if len(specs) > 1:
                    values = {k: selection_score(data.y, v, config.select_by) for k, v in candidates.items()}
                    picked[kind], chosen[f"{kind}_expert"] = _choose(specs, values)
                oof[kind] = candidates[picked[kind].label]
        encoder = data.encoder(data.ids)
        fitted = FittedExperts(config, data.n_classes, encoder)
        for kind, spec in picked.items():
            steps.advance(0, f"{EXPERT_NAMES[kind]} {spec.label} on every training patient")
            setattr(fitted, kind, data.fit(spec, kind, data.ids, encoder))  # fitted.image, fitted.attributes
            steps.advance()
        final_oof = next(iter(oof.values()), None)
        if config.fusions:
            attributes, cells = encoder.transform(cohort, data.ids), _mean_cells(bags_of, data.ids)
            fusion_spec = config.fusions[0]
            if judged_fusions:
                fused = {f.label: _fusion_oof(f, oof, attributes, cells, data, splits, steps) for f in judged_fusions}
                values = {k: selection_score(data.y, v, config.select_by) for k, v in fused.items()}
                fusion_spec, chosen["fusion_choice"] = _choose(config.fusions, values)
                final_oof = fused[fusion_spec.label]
            steps.advance(0, f"fusion {fusion_spec.label} on every training patient")
            fitted.fusion = FUSIONS.build(fusion_spec.name, fusion_spec.params, seed).fit(
                oof, attributes, cells, data.y
            )
            chosen.update({"fusion": fusion_spec.name, **fitted.fusion.choices()})
            steps.advance()
    if tuned and final_oof is not None:
        fitted.training_scores = np.exp(final_oof[:, 1])
        fitted.threshold = best_threshold(data.y, fitted.training_scores)
        fitted.threshold_source = "out_of_fold"
        chosen["threshold"] = round(fitted.threshold, 6)
    fitted.chosen = chosen
    return fitted


def _fusion_oof(
    spec: Any,
    oof: dict[str, np.ndarray],
    attributes: np.ndarray,
    cells: np.ndarray,
    data: _Training,
    splits: list[tuple[np.ndarray, np.ndarray]],
    steps: Steps,
) -> np.ndarray:
    """A fusion's out-of-fold log-probabilities: CV over the training patients' out-of-fold expert scores."""
    logp = np.zeros_like(next(iter(oof.values())))
    for fold, (a, b) in enumerate(splits):
        steps.advance(0, f"inner CV {fold + 1}/{len(splits)} · fusion {spec.label}")
        fusion = FUSIONS.build(spec.name, spec.params, data.seed)
        fusion.fit({k: v[a] for k, v in oof.items()}, attributes[a], cells[a], data.y[a])
        proba, _ = fusion.combine({k: v[b] for k, v in oof.items()}, attributes[b], cells[b])
        logp[b] = np.log(np.clip(proba, 1e-6, 1.0))
        steps.advance()
    return logp
