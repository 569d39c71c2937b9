"""``smearmil paired A B``: two cross-validations of one cohort on the same folds, difference by difference."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .app import app, guarded, out

NAMES = {"balanced_accuracy": "bal. acc", "roc_auc": "ROC-AUC", "sensitivity": "sens", "specificity": "spec"}


@app.command()
@guarded
def paired(
    first: Annotated[Path, typer.Argument(metavar="CV_A", help="A `smearmil cv` folder (one seed or --seeds).")],
    second: Annotated[Path, typer.Argument(metavar="CV_B", help="Another, of the same cohort, folds and seeds.")],
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples of the patients.")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """A minus B on the same test folds: each metric's mean, the mean per-fold difference, the folds each
    wins, and a 95% bootstrap interval of the difference over patients (resampled once for both, within
    each class, averaged over the seeds). E.g. `smearmil paired runs/cv runs/cv-nb`."""
    from ..evaluation.paired import paired_comparison

    result = paired_comparison(first, second, resamples)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    seeds = ", ".join(result["seeds"]) if result["seeds"] != [""] else "one"
    table = Table(title=f"{first} minus {second}: {result['patients']} patients, seeds {seeds}, test folds (paired)")
    for col in ("metric", "A", "B", "A - B per fold", "folds A / B better", "95% CI over patients"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m, r in result["metrics"].items():
        ci = "-" if r["ci95"] is None else f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
        values = [r["first"], r["second"], r["difference"]]
        a, b, d = ("-" if v is None else f"{v:.3f}" if k < 2 else f"{v:+.3f}" for k, v in enumerate(values))
        table.add_row(NAMES[m], a, b, d, f"{r['first_better']} / {r['second_better']} of {r['folds']}", ci)
    out.print(table)
