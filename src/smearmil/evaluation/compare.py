"""Comparison tables of several methods evaluated on the same patient-level folds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..utils.scoring import METRICS

LABELS = {"balanced_accuracy": "bal. acc", "roc_auc": "ROC-AUC", "sensitivity": "sens", "specificity": "spec",
          "accuracy": "acc", "macro_f1": "macro-F1"}


def _fmt(cell: Mapping[str, Any] | None) -> str:
    if not cell or cell.get("mean") is None:
        return "-"
    return f"{cell['mean']:.3f} ± {cell.get('std') or 0:.3f}"


def comparison_markdown(summaries: Mapping[str, Mapping[str, Any]], title: str = "") -> str:
    """A Markdown table: one row per method, mean ± std over test folds of each metric."""
    head = "| method | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    rule = "|---|" + "---|" * len(METRICS)
    rows = [f"| {name} | " + " | ".join(_fmt(s["metrics"].get(m)) for m in METRICS) + " |" for name, s in summaries.items()]
    return "\n".join(([f"**{title}**", ""] if title else []) + [head, rule, *rows]) + "\n"
