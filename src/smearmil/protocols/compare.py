"""One-command comparison of deep models and baselines on identical patient-level folds."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data.cohort import Cohort
from ..data.splits import make_splits
from ..evaluation.metrics import displayed_metrics, folds_note
from ..evaluation.plots import roc_plot
from ..training.config.baseline import BaselineConfig
from ..training.config.compare import CompareConfig, MethodSpec
from ..training.methods import Method, load_method
from ..training.methods.baseline import BaselineMethod
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.config_files import dump_yaml, load_config_file
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.scoring import METRICS
from ..utils.spreadsheet import SafeWriter
from .cv import CVResult, CVSettings, run_cv, run_on_same_folds
from .repeated import over_seeds, run_seeds

LABELS = {
    "balanced_accuracy": "bal. acc",
    "roc_auc": "ROC-AUC",
    "sensitivity": "sens",
    "specificity": "spec",
    "accuracy": "acc",
    "macro_f1": "macro-F1",
}


def load_compare_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> CompareConfig:
    return with_data_labels(load_config_file(name_or_path, CompareConfig, "compare", overrides))


def with_data_labels(config: CompareConfig) -> CompareConfig:
    """``config`` with what each method sees (imgs, attrs, imgs+attrs), read from its own config."""
    for m in config.methods:
        m.data = m.data or method_for(m, config).data_label()
    return config


def method_for(spec: MethodSpec, config: CompareConfig) -> Method:
    """The registered method a row names: its config's, or a baseline with the comparison's settings."""
    if spec.config:
        return load_method(spec.config, spec.overrides)
    return BaselineMethod(
        BaselineConfig(
            name=spec.label,
            data=config.data,
            baseline=spec.baseline or "",
            params=spec.params,
            inputs=spec.data,
            attributes=config.attributes,
            log_attributes=config.log_attributes,
            features=config.features,
        )
    )


def comparison_markdown(
    summaries: Mapping[str, Mapping[str, Any]], title: str = "", data: Mapping[str, str] | None = None
) -> str:
    """A Markdown table: one row per method, mean ± std over the test folds of each metric (with the
    number of folds when a metric is undefined on some) and the method's wall time."""

    def fmt(cell: Mapping[str, Any] | None) -> str:
        if not cell or cell.get("mean") is None:
            return "-"
        return f"{cell['mean']:.3f} ± {cell.get('std') or 0:.3f}{folds_note(dict(cell))}"

    def seconds(s: Mapping[str, Any]) -> str:
        return "-" if s.get("wall_seconds") is None else f"{s['wall_seconds']:.0f}"

    head = "| method | data | " + " | ".join(LABELS[m] for m in METRICS) + " | time (s) |"
    rule = "|---|---|" + "---|" * len(METRICS) + "---|"
    rows = [
        f"| {name} | {(data or {}).get(name, '')} | "
        + " | ".join(fmt(cells.get(m)) for m in METRICS)
        + f" | {seconds(s)} |"
        for name, s, cells in ((name, s, displayed_metrics(dict(s))) for name, s in summaries.items())
    ]
    return "\n".join(([f"**{title}**", ""] if title else []) + [head, rule, *rows]) + "\n"


def _comparison_csv(summaries: Mapping[str, Mapping[str, Any]], data: Mapping[str, str]) -> str:
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(
        [
            "method",
            "data",
            *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
            *(f"{m}_folds" for m in METRICS),
            "wall_seconds",
        ]
    )
    for name, s in summaries.items():
        shown = displayed_metrics(dict(s))
        cells = [shown[m].get(k) for m in METRICS for k in ("mean", "std")]
        total = len(s.get("folds") or [])
        counts = [f"{shown[m].get('n_folds', total)}/{shown[m].get('of', total)}" for m in METRICS]
        wall = "" if s.get("wall_seconds") is None else f"{s['wall_seconds']:.1f}"
        writer.writerow([name, data[name], *("" if v is None else f"{v:.6f}" for v in cells), *counts, wall])
    return buffer.getvalue()


def method_folder(out: str | Path, config: CompareConfig, spec: MethodSpec) -> Path:
    """Where ``run_compare`` writes the CV of one method (a run folder of its own)."""
    return Path(out) / "methods" / config.folders[spec.label]


def run_compare(cohort: Cohort, config: CompareConfig, out: str | Path, cv: CVSettings | None = None) -> dict[str, Any]:
    """Run every method on the same folds (``cv.folds`` drawn with ``cv.seed``); write comparison.csv/.md,
    summary.json and roc.png to ``out``."""
    cv = cv or CVSettings()
    folds, seed, cache_dir, progress, overwrite = cv.folds, cv.seed, cv.cache_dir, cv.progress, cv.overwrite
    start = time.perf_counter()
    run = RunDir(out)
    plan = make_splits(cohort, "kfold", folds=folds, val=config.val, seed=seed)
    plan.check_training_classes(cohort)
    fingerprint = run_fingerprint(config.model_dump(mode="json"), cohort.identity(), plan.to_json(), seed=seed)
    claim_output(run.path, "compare", fingerprint, overwrite)
    run.write_info(cohort.root, cohort.layout, "compare", fingerprint)
    settings = CVSettings(folds, seed, plan, cache_dir, progress)

    def method(spec: MethodSpec) -> Callable[[], CVResult]:
        return lambda: run_cv(cohort, method_for(spec, config), method_folder(run.path, config, spec), settings)

    results = run_on_same_folds(
        plan, run.path, {s.label: method(s) for s in config.methods}, dump_yaml(config), progress
    )
    summaries = {label: cv.summary for label, cv in results.items()}
    data = {spec.label: spec.data or "" for spec in config.methods}
    curves = (
        {label: (cv.labels, cv.proba[:, 1]) for label, cv in results.items()} if len(cohort.class_names) == 2 else {}
    )
    table = comparison_markdown(summaries, f"{folds}-fold CV, test folds (mean ± std)", data)
    write_text(run.path / "comparison.md", table)
    write_text(run.path / "comparison.csv", _comparison_csv(summaries, data))
    result = {
        "split": "test",
        "folds": folds,
        "methods": {
            name: {
                "data": data[name],
                # a mean over only some of the folds is missing here (the per-method summary has it, with its count)
                "metrics": {m: {k: s["metrics"][m][k] for k in ("mean", "std")} for m in METRICS},
                "per_fold": {m: [f.get(m) for f in s["folds"]] for m in METRICS},
                "wall_seconds": s.get("wall_seconds"),
                "folder": f"methods/{config.folders[name]}",
            }
            for name, s in summaries.items()
        },
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    partial = {name: s["partial_metrics"] for name, s in summaries.items() if s.get("partial_metrics")}
    if partial:  # metrics undefined on some test folds: null above; their mean over the other folds, with counts
        result["partial_metrics"] = partial
    if curves:
        roc_plot(curves, run.path / "roc.png", title=f"ROC, pooled test folds ({folds}-fold CV)")
    write_json(run.summary, result)
    return result


def run_compare_seeds(
    cohort: Cohort, config: CompareConfig, out: str | Path, seeds: list[int], cv: CVSettings | None = None
) -> dict[str, Any]:
    """``run_compare`` once per seed (``OUT/seed-<s>/``), then every method over all seeds and folds:
    ``summary.json`` (``methods``: data, metrics with ``std_seeds`` and ``seed_means``, wall time),
    ``comparison.md`` and ``comparison.csv`` in ``out``."""
    cv = cv or CVSettings()
    folds, progress, overwrite = cv.folds, cv.progress, cv.overwrite
    settings = {"config": config.model_dump(mode="json"), "folds": folds, "seeds": seeds}
    claim_output(Path(out), "compare-seeds", run_fingerprint(settings, cohort.identity(), None), overwrite)

    def one(seed: int, folder: Path) -> dict[str, Any]:
        return run_compare(cohort, config, folder, replace(cv, seed=seed))

    def combine(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
        first = next(iter(results.values()))
        methods = {}
        for name, row in first["methods"].items():
            per = {s: r["methods"][name] for s, r in results.items()}
            methods[name] = {
                "data": row["data"],
                "metrics": {m: over_seeds({s: p["per_fold"][m] for s, p in per.items()}) for m in METRICS},
                "wall_seconds": round(sum(p.get("wall_seconds") or 0.0 for p in per.values()), 2),
            }
        return {"folds": folds, "methods": methods}

    summary = run_seeds(seeds, out, one, combine, progress, dump_yaml(config))
    rows = {
        name: {"metrics": m["metrics"], "wall_seconds": m["wall_seconds"], "folds": [None] * (folds * len(seeds))}
        for name, m in summary["methods"].items()
    }
    data = {name: m["data"] for name, m in summary["methods"].items()}
    title = f"{folds}-fold CV repeated with seeds {', '.join(map(str, seeds))}: test folds (mean ± std over all folds)"
    write_text(Path(out) / "comparison.md", comparison_markdown(rows, title, data))
    write_text(Path(out) / "comparison.csv", _comparison_csv(rows, data))
    return summary
