"""``smearmil reproduce``: one of the papers' tables with the published figures beside ours."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..protocols.paper_tables import BUDGETS, TABLE_NAMES
from .app import app, guarded, out
from .flags import (
    CacheDirOpt,
    DataFlags,
    DataPath,
    FoldsOpt,
    OverwriteOpt,
    QuietOpt,
    SeedOpt,
    SetsFileOpt,
    SetsModeOpt,
    data_flags,
)


@app.command()
@guarded
@data_flags
def reproduce(
    table: Annotated[str, typer.Argument(help=f"Which table: {', '.join(TABLE_NAMES)}.")],
    path: DataPath,
    budget: Annotated[
        str,
        typer.Option(
            "--budget",
            help="cpu: every deep row at its CPU preset (smaller K and images, fewer steps; the table says so); "
            "paper: the faithful presets (a GPU's work).",
        ),
    ] = "cpu",
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    runs: Annotated[
        list[Path] | None,
        typer.Option("--run", help="table5: predict with this run (repeatable) instead of training its rows."),
    ] = None,
    mode: SetsModeOpt = "auto",  # table5 only
    sets_file: SetsFileOpt = None,
    set_predictions: Annotated[
        Path | None,
        typer.Option(
            "--set-predictions",
            help="table5: score per-set predictions made elsewhere (CSV: model,patient,set,true,predicted), "
            "e.g. the paper's own (smearmil/protocols/paper_table5.csv), instead of running models.",
        ),
    ] = None,
    published: Annotated[
        Path | None,
        typer.Option(
            "--published",
            help="CSV of published figures (columns table,row,metric,value,source) added to the stored ones.",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Every deep row trains this many epochs, in every stage; aml-encoders: every SSL pre-training.",
        ),
    ] = None,
    frozen_encoders: Annotated[
        bool,
        typer.Option(
            "--frozen-encoders",
            help="aml-encoders: freeze each encoder under one attention MIL head (faster) instead of fine-tuning "
            "it inside the MIL model as the paper does.",
        ),
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/reproduce"),
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print reproduce.json.")] = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Run the rows of one paper table on identical folds; table.md / table.csv put the published figures
    beside ours, with what differs (data, budget)."""
    from ..data.validation import load_cohort
    from ..protocols.cv import CVSettings
    from ..protocols.reproduce import TABLES, ReproduceOptions, run_reproduce
    from ..protocols.side_by_side import HEADERS

    if table not in TABLE_NAMES:
        raise typer.BadParameter(f"unknown table {table!r}; choose from {', '.join(TABLE_NAMES)}")
    if budget not in BUDGETS:
        raise typer.BadParameter(f"--budget {budget!r}: choose from {', '.join(BUDGETS)}")
    progress = not (quiet or as_json)
    options = data.options()
    cohort = load_cohort(path, options, progress=progress)
    chosen = ReproduceOptions(
        budget, epochs, published, options, runs or [], mode, sets_file, set_predictions, frozen_encoders
    )
    result = run_reproduce(
        table, cohort, out_dir, chosen, CVSettings(folds, seed, None, cache_dir, progress, overwrite)
    )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    metrics = TABLES[table].metrics
    budget_text = f", budget {result['budget']}" if result["budget"] else ""
    shown = Table(title=f"{result['title']} ({result['protocol']}{budget_text})")
    shown.add_column("row")
    for m in metrics:
        shown.add_column(f"{HEADERS[m]}: ours", justify="right")
        shown.add_column("published", justify="right")
    for name, row in result["rows"].items():
        cells = []
        for m in metrics:
            mine = row["ours"].get(m) or {}
            cells += [
                "not run" if row.get("not_run") else "-" if mine.get("mean") is None else f"{mine['mean']:.3f}",
                "-" if row["published"].get(m) is None else f"{row['published'][m]:.3f}",
            ]
        shown.add_row(name, *cells)
    out.print(shown)
    for note in result["notes"]:
        out.print(f"- {note}", highlight=False)
    out.print(f"-> {out_dir}/table.md (every metric), table.csv, reproduce.json ({result['wall_seconds']:.0f} s)")
