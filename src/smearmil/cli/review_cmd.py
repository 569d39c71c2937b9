"""``smearmil review``: the haematologist's review page of a folder of predictions, and its export."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from .app import app, guarded, out


def default_db(folder: Path) -> Path:
    """``<folder name>-review.sqlite`` in the current folder (never inside the predictions' folder)."""
    return Path(f"{folder.resolve().name}-review.sqlite")


@app.command()
@guarded
def review(
    predict_dir: Annotated[
        Path,
        typer.Argument(
            metavar="PREDICT_DIR",
            help="Output of `predict`, or a `cv` or `evaluate` folder with per-patient predictions.",
        ),
    ],
    db: Annotated[
        Path | None,
        typer.Option("--db", help="SQLite file of the decisions (default: ./<PREDICT_DIR name>-review.sqlite)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to serve on (local only unless told otherwise).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to serve on.")] = 8765,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Name recorded with each decision (default: your login).")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write the latest decision per patient and reviewer, and the flagged cells, to this CSV, then stop.",
        ),
    ] = None,
) -> None:
    """Review predictions patient by patient in a local web page: cells ranked by contribution, decisions
    and cell flags recorded in an append-only SQLite trail (PREDICT_DIR is only read). Ctrl-C stops it."""
    from ..utils.outputs import require_output_folder
    from ..utils.paths import inside

    require_output_folder(predict_dir)
    db = db if db is not None else default_db(predict_dir)
    if inside(predict_dir, db):
        raise ValueError(f"--db {db} lies inside {predict_dir}, which review only reads: put the database elsewhere")
    if export is not None and inside(predict_dir, export):
        raise ValueError(f"--export {export} lies inside {predict_dir}, which review only reads: write it elsewhere")
    from ..review.folder import ReviewFolder
    from ..review.store import DecisionStore

    folder = ReviewFolder(predict_dir)
    store = DecisionStore(db, folder.identity, folder.path, len(folder.patients))
    if export is not None:
        from ..review.export import export_csv

        decisions, flags = export_csv(store, export)
        out.print(f"{decisions} decisions, {flags} flagged cells -> {export}")
        return
    from ..review.serve import serve

    name = reviewer or _login()
    serve(folder, store, name, host, port, say=out.print)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"
