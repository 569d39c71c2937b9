"""What `smearmil predict` prints: a worklist (patient, call, probability, a flag when uncertain), the
metrics when patients have labels, the files written, and a closing tally; a warning on stderr when the
predictions look like a model at chance (``protocols.worklist`` says when)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..protocols.worklist import Call, band_text, calls, chance_warning, counts, tally_line


def annotate(result: dict[str, Any], band: float) -> list[Call]:
    """The worklist of a `predict_to` result; adds to it (and so to --json) each patient's ``uncertain``
    flag, the ``uncertainty_band``, the ``tally`` and the ``chance_warning`` (None when there is none)."""
    names, threshold = result["class_names"], result["threshold"]
    found = calls(result["patients"], names, threshold, band)
    for row, call in zip(result["patients"], found):
        row["uncertain"] = call.uncertain
    result["uncertainty_band"] = band_text(names, threshold, band)
    result["tally"] = counts(found, names)
    result["chance_warning"] = chance_warning(result["patients"], names, result["model"])
    return found


def worklist_table(found: list[Call], class_names: list[str]) -> Table:
    labelled = any(c.label for c in found)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("patient")
    table.add_column("call")
    table.add_column(f"P({class_names[1]})" if len(class_names) == 2 else "P(call)", justify="right")
    if labelled:
        table.add_column("true")
    table.add_column("")
    for c in found:
        flag = Text("uncertain", "yellow") if c.uncertain else Text("")
        truth = [c.label] if labelled else []
        table.add_row(Text(c.patient, "bold"), Text(c.call, "green"), f"{c.probability:.3f}", *truth, flag)
    return table


def _relative(file: str, root: Path | None) -> str:
    if root is not None:
        try:
            return str(Path(file).relative_to(root))
        except ValueError:
            pass
    return file


def print_cells(console: Console, result: dict[str, Any], top: int, root: Path | None) -> None:
    """Each patient's ``top`` cells pushing most for and most against, their paths under ``root``."""
    toward = result.get("positive_class") or "the predicted class"
    under = f", paths under {root}" if root is not None else ""
    console.print(f"cells, {top} each way (logit contribution; + pushes toward {toward}{under}):")
    for r in result["patients"]:
        shown = r["top_cells"] + [c for c in r["bottom_cells"] if c not in r["top_cells"]]
        for c in shown:
            console.print(f"  {r['patient']}  {c['contribution']:+.4f}  {_relative(c['file'], root)}")


def print_worklist(
    console: Console,
    result: dict[str, Any],
    found: list[Call],
    out_dir: Path,
    band: float,
    quiet: bool = False,
    top: int | None = None,
    root: Path | None = None,
) -> None:
    """The worklist, the metrics (labelled patients), the cells (``top``), the files and the tally;
    ``quiet``: the tally only."""
    from .tables import metrics_table

    names = result["class_names"]
    tally = tally_line(found, names, result["threshold"], band)
    if quiet:
        console.print(tally)
        return
    console.print(f"model: {result['model']} ({result['model_kind']}); threshold {result['threshold']:.2f}")
    console.print(worklist_table(found, names))
    if "metrics" in result:
        console.print(metrics_table(f"metrics on {result['split']}", {"predicted": result["metrics"]}, names))
    if top:
        print_cells(console, result, top, root)
    files = ", ".join(result["files"])
    console.print(f"-> {os.path.join(out_dir, '')}: {files} ({result['n_cells']} cells)")
    console.print(tally)
