"""Tables the commands print: metrics per method or split, per fold, attention per cell type."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def positive_note(class_names: list[str] | None) -> str | None:
    """What sensitivity and specificity refer to."""
    if not class_names:
        return None
    if len(class_names) == 2:
        return f"sensitivity and specificity: positive class {class_names[1]!r} (vs {class_names[0]!r})"
    return "sensitivity and specificity: one-vs-rest, macro-averaged over the classes"


def metrics_table(title: str, rows: dict[str, dict[str, Any]], class_names: list[str] | None = None) -> Table:
    from ..evaluation.metrics import METRICS
    from ..protocols.compare import LABELS

    table = Table(title=title, caption=positive_note(class_names))
    table.add_column("")
    for m in METRICS:
        table.add_column(LABELS[m], justify="right")
    for name, values in rows.items():
        table.add_row(name, *(cell(values.get(m)) for m in METRICS))
    return table


def metrics_line(summary: dict[str, Any]) -> str:
    """A CV summary's test metrics on one line: ``bal. acc 0.833±0.05 · ROC-AUC 0.912±0.04 · ...``."""
    from ..evaluation.metrics import METRICS
    from ..protocols.compare import LABELS

    shown = displayed_metrics(summary)
    return " · ".join(f"{LABELS[m]} {cell(shown.get(m))}" for m in METRICS)


def displayed_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    from ..evaluation.metrics import displayed_metrics as shown

    return shown(summary)


def cell(value: Any) -> str:
    from ..evaluation.metrics import folds_note

    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        return "-" if mean is None else f"{mean:.3f}±{std or 0:.2f}{folds_note(value)}"
    return "-" if value is None else f"{value:.3f}"


def fold_table(title: str, summary: dict[str, Any]) -> Table:
    table = Table(title=title)
    for col in ("fold", "test patients", "macro-F1", "bal. acc.", "accuracy"):
        table.add_column(col, justify="right" if col != "fold" else "left")
    for f in summary["folds"]:
        table.add_row(
            f["fold"], str(f["n_test"]), cell(f["macro_f1"]), cell(f["balanced_accuracy"]), cell(f["accuracy"])
        )
    m = displayed_metrics(summary)
    table.add_row("mean ± std", "", cell(m["macro_f1"]), cell(m["balanced_accuracy"]), cell(m["accuracy"]))
    return table


def attention_table(summary: dict[str, Any]) -> Table | None:
    by_type = summary.get("attention_by_cell_type")
    if not by_type:
        return None
    kinds = sorted({k for per in by_type.values() for k in per})
    table = Table(title="mean relative attention per cell type (test cells; 1 = uniform)")
    table.add_column("cell type")
    for label in by_type:
        table.add_column(label, justify="right")
    for kind in kinds:
        table.add_row(
            kind,
            *(
                f"{by_type[c][kind]['mean_relative_attention']:.2f} ({by_type[c][kind]['n_cells']})"
                if kind in by_type[c]
                else "-"
                for c in by_type
            ),
        )
    return table
