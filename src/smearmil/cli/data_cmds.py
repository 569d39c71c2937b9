"""Commands on data sets and the image cache: list, simulate, data inspect|split|cache, cache list|clear."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import __version__
from ..data.layouts import LAYOUTS
from ..data.problems import DataError
from ..utils.config_files import shipped_presets
from .app import app, cache_app, data_app, guarded, out
from .flags import CacheDirOpt, DataFlags, DataPath, OverwriteOpt, QuietOpt, SeedOpt, data_flags


@app.command()
def version() -> None:
    """Print the smearmil version."""
    out.print(__version__)


@app.command("list")
def list_cmd() -> None:
    """The shipped presets (what each is for, its measured figures and on what data), then every registered
    component a config can name."""
    from ..baselines.registry import BASELINES
    from ..models.specs import ENCODERS, MODELS, POOLINGS
    from ..training.config import PAPER_ROWS
    from ..training.config.components import CELL_SOURCES, FUSIONS, SSL_METHODS
    from ..training.methods import METHODS
    from ..utils.config_files import preset_catalogue, preset_summary

    catalogue = preset_catalogue()
    presets = Table(title="presets (--config NAME; recommended: cpu-fusion)")
    for column in ("preset", "kind", "what it is", "measured"):
        presets.add_column(column, overflow="fold")
    for kind in ("experts", "run", "baseline", "compare", "head", "ssl"):
        for name in shipped_presets(kind):
            entry = catalogue.get(name, {})
            presets.add_row(name, kind, entry.get("for") or preset_summary(name), entry.get("measured", "-"))
    for pattern, about in PAPER_ROWS:
        presets.add_row(pattern, "run", f"paper row: {about}", "-")
    out.print(presets)
    registries: dict[str, Any] = {
        "methods (config kinds)": METHODS,
        "cell feature sources": CELL_SOURCES,
        "late fusions": FUSIONS,
        "model kinds": MODELS,
        "encoders": ENCODERS,
        "poolings": POOLINGS,
        "SSL methods": SSL_METHODS,
        "layouts": LAYOUTS,
        "baselines": BASELINES,
    }
    table = Table(title="components")
    table.add_column("kind")
    table.add_column("names", overflow="fold")
    for kind, registry in registries.items():
        table.add_row(kind, registry.choices())
    out.print(table)


@app.command()
@guarded
def simulate(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write the cohort to.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 60,
    cells_per_patient: Annotated[str, typer.Option(help="MIN:MAX cells per patient.")] = "16:48",
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    seed: SeedOpt = 0,
    classes: Annotated[int, typer.Option(help="Number of classes (class 0 has no abnormal cells).")] = 2,
    scenario: Annotated[
        str, typer.Option(help="standard, or expert-split (each expert right on other patients).")
    ] = "standard",
    abnormal_fraction: Annotated[
        str, typer.Option(help="MIN:MAX fraction of abnormal cells in diseased bags.")
    ] = "0.2:0.5",
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a synthetic cohort of stained-smear cells (lymphocytosis layout + cell truth)."""
    from ..data.simulate import SimulationConfig
    from ..data.simulate import simulate as run

    lo, _, hi = cells_per_patient.partition(":")
    flo, _, fhi = abnormal_fraction.partition(":")
    config = SimulationConfig(
        patients=patients,
        cells_min=int(lo),
        cells_max=int(hi or lo),
        size=size,
        seed=seed,
        classes=classes,
        scenario=scenario,  # type: ignore[arg-type]
        abnormal_fraction=(float(flo), float(fhi or flo)),
    )
    path = run(out_dir, config, progress=not quiet, overwrite=overwrite)
    out.print(f"wrote {patients} patients to {path}")


@data_app.command("inspect")
@data_flags
def inspect_cmd(
    path: DataPath,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    keep_duplicates: Annotated[bool, typer.Option(help="Keep repeated images of a bag.")] = False,
    quiet: QuietOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Check a data set and report classes, bag sizes, attributes and every problem."""
    from ..data.inspect import InspectReport, inspect_data

    try:
        options = data.options(drop_duplicate_images=False if keep_duplicates else None)
        report = inspect_data(path, options, progress=not (quiet or as_json))
    except (ValueError, DataError) as error:
        problems = error.problems if isinstance(error, DataError) else [usage_problem(error)]
        report = InspectReport(data.layout, str(path), 0, 0, {}, [], {}, {}, problems)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.print(report.render())
    if not report.ok:
        raise typer.Exit(1)


def usage_problem(error: Exception) -> Any:
    from ..data.problems import Problem

    return Problem("bad_option", "command line", str(error))


@data_app.command("split")
@guarded
@data_flags
def split_cmd(
    path: DataPath,
    out_file: Annotated[Path, typer.Option("--out", help="Splits file (JSON) to write.")] = Path("splits.json"),
    scheme: Annotated[str, typer.Option(help="holdout, kfold or repeated-kfold.")] = "kfold",
    folds: Annotated[int, typer.Option(help="Folds (k-fold schemes).")] = 5,
    repeats: Annotated[int, typer.Option(help="Repeats (repeated-kfold).")] = 3,
    val: Annotated[float, typer.Option(help="Validation fraction (of each fold's training part for k-fold).")] = 0.15,
    test: Annotated[float, typer.Option(help="Test fraction (holdout).")] = 0.2,
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Split patients (never cells) into train/validation/test and write a splits file."""
    from ..data.splits import make_splits
    from ..data.validation import load_cohort

    cohort = load_cohort(path, data.options(check_images=False), progress=not quiet)
    plan = make_splits(cohort, scheme, folds=folds, repeats=repeats, val=val, test=test, seed=seed)  # type: ignore[arg-type]
    plan.save_new(out_file, overwrite)
    table = Table(title=f"{scheme} split of {len(cohort)} patients (seed {seed})")
    for col in ("fold", "train", "val", "test"):
        table.add_column(col, justify="right")
    for f in plan.folds:
        table.add_row(f.name, *(class_mix(cohort, ids) for ids in (f.train, f.val, f.test)))
    out.print(table)
    out.print(f"wrote {out_file}")


def class_mix(cohort: Any, ids: tuple[str, ...]) -> str:
    counts = {c: 0 for c in cohort.class_names}
    for i in ids:
        counts[cohort[i].label] += 1
    return f"{len(ids)} (" + " / ".join(str(v) for v in counts.values()) + ")"


@data_app.command("cache")
@guarded
@data_flags
def cache_cmd(
    path: DataPath,
    size: Annotated[int, typer.Option(help="Side the images are resized to.")] = 224,
    crop: Annotated[int | None, typer.Option(help="Keep the central CROP pixels after resizing.")] = None,
    cache_dir: CacheDirOpt = None,
    key: Annotated[str, typer.Option(help="stat (path, size, mtime) or content (file hashes).")] = "stat",
    quiet: QuietOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Decode every cell once into the memory-mapped image cache."""
    from ..data.cache import build_cache
    from ..data.images import Preprocessing
    from ..data.validation import load_cohort

    cohort = load_cohort(path, data.options(), progress=not quiet)
    cache = build_cache(cohort, Preprocessing(size, crop), cache_dir, key, progress=not quiet)  # type: ignore[arg-type]
    out.print(f"{len(cache)} cells of {len(cache.patient_ids)} patients, {cache.shape[1]} px, in {cache.directory}")


@cache_app.command("list")
@guarded
def cache_list_cmd(
    cache_dir: CacheDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """The image caches smearmil built: data set, cells, image size, disk use, last use."""
    from ..data.cache import default_cache_dir
    from ..data.cache_admin import list_caches

    folder = cache_dir or default_cache_dir()
    entries = list_caches(folder)
    if as_json:
        rows = [
            {
                "path": str(e.path),
                "data": e.data,
                "cells": e.cells,
                "patients": e.patients,
                "size_px": e.size_px,
                "bytes": e.bytes,
                "age_days": round(e.age_days, 2),
            }
            for e in entries
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"image caches in {folder}")
    for col in ("folder", "data set", "patients", "cells", "px", "MB", "last used (days ago)"):
        table.add_column(col, justify="left" if col in ("folder", "data set") else "right", overflow="fold")
    for e in entries:
        table.add_row(
            e.path.name, e.data, str(e.patients), str(e.cells), e.size_px, f"{e.bytes / 1e6:,.0f}", f"{e.age_days:.1f}"
        )
    out.print(table)
    out.print(
        f"{len(entries)} caches, {sum(e.bytes for e in entries) / 1e6:,.0f} MB (`smearmil cache clear` frees them)"
    )


@cache_app.command("clear")
@guarded
def cache_clear_cmd(
    cache_dir: CacheDirOpt = None,
    older_than: Annotated[
        float | None, typer.Option("--older-than", help="Only caches unused for this many days.")
    ] = None,
    data_set: Annotated[Path | None, typer.Option("--data", help="Only the caches of this data set.")] = None,
) -> None:
    """Delete smearmil's image caches (they rebuild when needed); nothing else in the folder is touched."""
    from ..data.cache import default_cache_dir
    from ..data.cache_admin import clear_caches

    folder = cache_dir or default_cache_dir()
    busy: list[Any] = []
    removed = clear_caches(folder, older_than, data_set, busy)
    for e in removed:
        out.print(f"removed {e.path.name} ({e.data}, {e.bytes / 1e6:,.0f} MB)")
    for e, holder in busy:
        out.print(f"kept {e.path.name}: in use by {holder}; clear it when that command has finished")
    out.print(f"freed {sum(e.bytes for e in removed) / 1e6:,.0f} MB in {folder}")
