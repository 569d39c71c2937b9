"""Encoders through one attention-MIL head, per fold: random, supervised, SimCLR, SwAV, DINO.

In every fold the encoder learns from the training patients' cells only (self-supervised methods
from their images, the supervised one from their bag labels, the single-cell one from their cells'
types, or from a separate single-cell data set), then every cell is embedded and the head is trained
and tested on the fold's patients. No test cell is ever seen by an encoder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data.cache import ImageCache, build_cache
from ..data.cohort import Cohort
from ..data.splits import Fold, make_splits
from ..training.cell_sources import CELL_SOURCES, Embedding, SourceContext, learns_cell_types
from ..training.config import load_config
from ..training.config.components import BASELINE_ENCODERS, SSL_METHODS
from ..training.config.experts import head_on_cells
from ..training.config.head import HeadConfig
from ..training.config.ssl import SSLConfig
from ..training.methods import FitSettings
from ..training.methods.run import RunMethod
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.outputs import claim_output, run_fingerprint
from .cv import CVResult, CVSettings, FoldPredictions, run_folds, run_on_same_folds
from .cv import fit_and_test as fit_and_test_fold
from .feature_cv import run_head_cv

PAPER_ORDER = ("simclr", "swav", "dino")  # the order of the second paper's comparison; others follow by name


def encoder_kinds() -> list[str]:
    """The encoders a fold can learn: the two baselines and every registered SSL method."""
    methods = sorted(SSL_METHODS.names(), key=lambda n: (PAPER_ORDER.index(n) if n in PAPER_ORDER else 99, n))
    return [*BASELINE_ENCODERS, *methods]


def fold_featurizer(
    kind: str,
    cohort: Cohort,
    cache: ImageCache,
    fold: Fold,
    ssl: SSLConfig,
    fold_dir: Path,
    supervised_config: str = "cpu-attention",
    progress: bool = True,
) -> Embedding:
    """The encoder of ``kind`` for one fold, learnt from the fold's training (and validation) patients only,
    from the registered cell sources (``training.cell_sources``), and where it is saved (``home``)."""
    if kind not in encoder_kinds():
        raise ValueError(f"unknown encoder {kind!r}; choose from {', '.join(encoder_kinds())}")
    source = kind if kind in BASELINE_ENCODERS else "ssl"
    supervised = None
    if kind == "supervised":
        shapes = {"seed": ssl.seed, "image": ssl.image.model_dump(), "model": {"encoder": ssl.encoder.model_dump()}}
        supervised = load_config(supervised_config, shapes)
    context = SourceContext(
        cohort,
        fold,
        fold_dir,
        fold_dir.parent,
        ssl=ssl if source != "ssl" else ssl.with_method(kind),
        supervised=supervised,
        cache_dir=cache.directory.parent,
        progress=progress,
    )
    featurizer = CELL_SOURCES.get(source)(context)
    assert isinstance(featurizer, Embedding)
    return featurizer


def applicable_kinds(cohort: Cohort, ssl: SSLConfig) -> list[str]:
    """The encoders that can learn on this cohort: single-cell needs cell types or ``ssl.cell_labels``."""
    return [k for k in encoder_kinds() if k != "single-cell" or learns_cell_types(cohort, ssl)]


def run_encoder_cv(
    cohort: Cohort,
    kind: str,
    ssl: SSLConfig,
    head: HeadConfig,
    out: str | Path,
    cv: CVSettings | None = None,
    supervised_config: str = "cpu-attention",
    umap: bool = True,
) -> CVResult:
    """Per fold: encoder of ``kind`` -> features of every cell -> head trained and tested; CV summary. It is
    the experts method with the encoder as its cells' source and the head as its image expert, so each
    fold keeps a predictor and the folder predicts new patients from their images."""
    if kind not in encoder_kinds():
        raise ValueError(f"unknown encoder {kind!r}; choose from {', '.join(encoder_kinds())}")
    source = kind if kind in BASELINE_ENCODERS else "ssl"
    cells: dict[str, Any] = {"source": source, "ssl": (ssl.with_method(kind) if source == "ssl" else ssl).model_dump()}
    if kind == "supervised":
        shapes = {"seed": ssl.seed, "image": ssl.image.model_dump(), "model": {"encoder": ssl.encoder.model_dump()}}
        cells["supervised"] = load_config(supervised_config, shapes).model_dump(mode="json")
    config = head_on_cells(f"{kind} + {head.pooling.name} MIL", (cv or CVSettings()).seed, cells, head)
    return run_head_cv(cohort, config, out, cv, umap, kind="ssl-cv")


def run_finetune_cv(
    cohort: Cohort,
    kind: str,
    ssl: SSLConfig,
    out: str | Path,
    cv: CVSettings | None = None,
    mil_config: str = "cpu-attention",
) -> CVResult:
    """Per fold: the encoder of ``kind``, learnt from the fold's training patients (or random weights), starts
    the image expert of ``mil_config``, which is then trained end to end on the fold's training patients
    and tested: the MIL stage fine-tunes the encoder instead of freezing it."""
    cv = cv or CVSettings()
    folds, seed, splits, cache_dir, progress, overwrite = (
        cv.folds,
        cv.seed,
        cv.splits,
        cv.cache_dir,
        cv.progress,
        cv.overwrite,
    )
    if kind == "supervised":
        raise ValueError("the supervised encoder is a MIL model trained end to end already; fine-tune SSL ones")
    started = time.perf_counter()
    run = RunDir(out)
    shapes = {"seed": seed, "image": ssl.image.model_dump()}  # the MIL model takes the encoder's input
    base = load_config(mil_config, {**shapes, "model": {"encoder": ssl.encoder.model_dump()}})
    plan = splits or make_splits(cohort, "kfold", folds=folds, val=0.0, seed=seed)
    plan.check_cohort(cohort)
    plan.check_training_classes(cohort)
    settings = {"fine_tune": kind, "ssl": ssl.model_dump(mode="json"), "mil": base.model_dump(mode="json")}
    fingerprint = run_fingerprint(settings, cohort.identity(), plan.to_json())
    claim_output(run.path, "cv", fingerprint, overwrite)
    run.write_info(cohort.root, cohort.layout, "cv", fingerprint)
    cache = build_cache(cohort, ssl.image.preprocessing, cache_dir, progress=progress)

    def fit_predict(fold: Fold, fold_dir: Path) -> FoldPredictions:
        init = None
        if kind != "random":  # the encoder where its source saved it (ssl-<method>/, single-cell/)
            init = str(fold_featurizer(kind, cohort, cache, fold, ssl, fold_dir, progress=progress).home)
        config = load_config(mil_config, {**shapes, "model": {"encoder": {**ssl.encoder.model_dump(), "init": init}}})
        settings = FitSettings(seed, plan.folds.index(fold), run.path, cache.directory.parent, progress)
        return fit_and_test_fold(RunMethod(config), cohort, fold, fold_dir / "mil", settings)[0]

    return run_folds(
        cohort,
        plan,
        fit_predict,
        run.path,
        name=f"{kind} encoder fine-tuned in {base.name}",
        seed=seed,
        config_text=base.to_yaml(),
        started=started,
        progress=progress,
        finish=lambda _, summary: summary.update(model=f"{kind} encoder fine-tuned end to end in {base.name}"),
    )


def run_encoder_comparison(
    cohort: Cohort,
    kinds: Sequence[str],
    ssl: SSLConfig,
    head: HeadConfig,
    out: str | Path,
    folds: int = 5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    supervised_config: str = "cpu-attention",
    progress: bool = True,
    overwrite: bool = False,
    fine_tune: bool = False,
) -> dict[str, Any]:
    """Every encoder on identical folds; ``comparison.csv`` and ``summary.json`` with macro-F1 per encoder."""
    if fine_tune and "supervised" in kinds:  # refused before anything is written
        raise ValueError(
            "with fine-tuning, 'random' is the MIL model trained end to end from scratch; drop 'supervised'"
        )
    start = time.perf_counter()
    run = RunDir(out)
    plan = make_splits(cohort, "kfold", folds=folds, val=0.0, seed=seed)
    config = {
        "encoders": list(kinds),
        "ssl": ssl.model_dump(mode="json"),
        "head": head.model_dump(mode="json"),
        "supervised": supervised_config,
        "fine_tune": fine_tune,
        "folds": folds,
        "seed": seed,
    }
    fingerprint = run_fingerprint(config, cohort.identity(), plan.to_json())
    claim_output(run.path, "ssl-compare", fingerprint, overwrite)
    run.write_info(cohort.root, cohort.layout, "ssl compare", fingerprint)

    def encoder(kind: str) -> Callable[[], CVResult]:
        settings = CVSettings(folds, seed, plan, cache_dir, progress)
        if fine_tune:
            return lambda: run_finetune_cv(cohort, kind, ssl, run.path / kind, settings, supervised_config)
        return lambda: run_encoder_cv(cohort, kind, ssl, head, run.path / kind, settings, supervised_config)

    results = run_on_same_folds(plan, run.path, {kind: encoder(kind) for kind in kinds}, progress=progress)
    summaries = {kind: cv.summary for kind, cv in results.items()}
    result: dict[str, Any] = {
        "split": "test",
        "encoders": {
            kind: {
                "macro_f1": s["metrics"]["macro_f1"],
                "balanced_accuracy": s["metrics"]["balanced_accuracy"],
                "folds_macro_f1": [f["macro_f1"] for f in s["folds"]],
                "wall_seconds": s["wall_seconds"],
            }
            for kind, s in summaries.items()
        },
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    lines = ["encoder,macro_f1_mean,macro_f1_std,balanced_accuracy_mean,folds_macro_f1"]
    for kind, r in result["encoders"].items():
        folds_text = " ".join(f"{v:.3f}" for v in r["folds_macro_f1"])
        lines.append(
            f"{kind},{r['macro_f1']['mean']:.4f},{r['macro_f1']['std']:.4f},"
            f"{r['balanced_accuracy']['mean']:.4f},{folds_text}"
        )
    write_text(run.path / "comparison.csv", "\n".join(lines) + "\n")
    write_json(run.summary, result)
    return result
