"""Command line: thin wrappers over the Python API (no logic here beyond parsing and printing)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .data.layouts import LAYOUTS
from .data.options import DataOptions
from .data.problems import DataError
from .utils.config_files import COMMANDS, shipped_presets
from .utils.progress import console as err_console

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Deep multiple-instance learning on blood-smear cells."
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect, split and cache a data set.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print measured ratios.")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
ssl_app = typer.Typer(no_args_is_help=True, help="Self-supervised cell encoders: pre-train, evaluate, compare.")
features_app = typer.Typer(no_args_is_help=True, help="Cached cell embeddings and MIL heads on them.")
app.add_typer(ssl_app, name="ssl")
app.add_typer(features_app, name="features")
# pipes and CI logs get whole tables; markup off: names and paths from users print as they are
out = Console(width=None if sys.stdout.isatty() else 140, markup=False)


def error_line(message: object, label: str = "error:", style: str = "red") -> Text:
    return Text.assemble((label, style), " ", str(message))


F = TypeVar("F", bound=Callable[..., Any])

DataPath = Annotated[Path, typer.Argument(help="Folder of the data set.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help=f"auto, or one of: {LAYOUTS.choices()}.")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Clinical table, if not found by the layout.")]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="YAML file of data options (columns, classes, ...).")]
IdOpt = Annotated[str | None, typer.Option("--id-column", help="Patient-id column.")]
LabelOpt = Annotated[str | None, typer.Option("--label-column", help="Label column.")]
AttrOpt = Annotated[str | None, typer.Option("--attributes", help="Comma-separated attribute columns.")]
ClassOpt = Annotated[str | None, typer.Option("--class-names", help="Comma-separated class names, in label order.")]
RefOpt = Annotated[str | None, typer.Option("--reference-date", help="Date (YYYY-MM-DD) for ages from DOB.")]
MissingOpt = Annotated[str | None, typer.Option("--missing-policy", help="error, or impute (training median).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Number of folds.")]
TableJsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json instead of a table.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace OUT if it holds this kind of smearmil output of other inputs (a folder smearmil did not "
        "write is never touched).",
    ),
]


def _split_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def data_options(
    layout: str = "auto",
    csv: Path | None = None,
    spec: Path | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    attributes: str | None = None,
    class_names: str | None = None,
    reference_date: str | None = None,
    missing_policy: str | None = None,
    **extra: Any,
) -> DataOptions:
    """DataOptions from command-line flags, on top of an optional YAML spec."""
    overrides: dict[str, Any] = {
        "layout": None if layout == "auto" else layout,
        "csv": csv,
        "id_column": id_column,
        "label_column": label_column,
        "attributes": _split_list(attributes),
        "class_names": _split_list(class_names),
        "reference_date": date.fromisoformat(reference_date) if reference_date else None,
        "missing_policy": missing_policy,
        **extra,
    }
    if spec is not None:
        return DataOptions.from_yaml(spec, **overrides)
    return DataOptions.model_validate({k: v for k, v in overrides.items() if v is not None})


def guarded(fn: F) -> F:
    """Turn data and usage errors into a clear report and a non-zero exit, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DataError as error:
            _print_problems(error)
            raise typer.Exit(2) from None
        except (OSError, ValueError) as error:  # files the user named (missing, unwritable, not a folder), bad values
            err_console.print(error_line(error))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _print_problems(error: DataError) -> None:
    table = Table(title="data problems", show_lines=False)
    for col in ("severity", "kind", "where", "message"):
        table.add_column(col, overflow="fold")
    for p in error.problems:
        table.add_row(p.severity, p.kind, p.where, p.message)
    err_console.print(table)
    err_console.print(error_line(str(error).splitlines()[0]))


@bench_app.command("features")
@guarded
def bench_features_cmd(
    path: DataPath,
    cells: Annotated[int, typer.Option(help="How many cells to time.")] = 200,
    jobs: Annotated[int, typer.Option(help="Parallel processes.")] = 2,
    target_cells: Annotated[int, typer.Option(help="Cohort size to project the time for.")] = 13000,
    goal_minutes: Annotated[float, typer.Option(help="Time goal for that cohort.")] = 20.0,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Cells per second of the 94 hand-crafted features; last line `ratio: goal / projected time`."""
    from .bench import bench_features

    result = bench_features(path, n_cells=cells, n_jobs=jobs, cache_dir=cache_dir, progress=not quiet)
    minutes = result.minutes_for(target_cells)
    out.print(f"cells: {result.cells}")
    out.print(f"1 process: {result.cells_per_second(False):.1f} cells/s")
    out.print(f"{result.n_jobs} processes: {result.cells_per_second():.1f} cells/s")
    out.print(f"{target_cells:,} cells on {result.n_jobs} processes: {minutes:.1f} min (goal {goal_minutes:g} min)")
    out.print(f"ratio: {goal_minutes / minutes:.2f}")


@app.command()
def version() -> None:
    """Print the smearmil version."""
    out.print(__version__)


@app.command("list")
def list_cmd() -> None:
    """Every registered component a config can name, and the shipped presets of each config kind."""
    # imported here: the model and SSL registries load torch, which the other commands' help does not need
    from .baselines import BASELINES
    from .models import ENCODERS, MODELS, POOLINGS
    from .training.ssl import SSL_METHODS

    registries = {
        "model kinds": MODELS,
        "encoders": ENCODERS,
        "poolings": POOLINGS,
        "SSL methods": SSL_METHODS,
        "layouts": LAYOUTS,
        "baselines": BASELINES,
    }
    table = Table(title="components and presets")
    table.add_column("kind")
    table.add_column("names", overflow="fold")
    for kind, registry in registries.items():
        table.add_row(kind, registry.choices())
    for kind in COMMANDS:
        table.add_row(f"{kind} presets", ", ".join(shipped_presets(kind)) or "-")
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
    from .data.simulate import SimulationConfig
    from .data.simulate import simulate as run

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
def inspect_cmd(
    path: DataPath,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    layout: LayoutOpt = "auto",
    csv: CsvOpt = None,
    spec: SpecOpt = None,
    id_column: IdOpt = None,
    label_column: LabelOpt = None,
    attributes: AttrOpt = None,
    class_names: ClassOpt = None,
    reference_date: RefOpt = None,
    missing_policy: MissingOpt = None,
    keep_duplicates: Annotated[bool, typer.Option(help="Keep repeated images of a bag.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Check a data set and report classes, bag sizes, attributes and every problem."""
    from .data.inspect import InspectReport, inspect_data

    try:
        options = data_options(
            layout,
            csv,
            spec,
            id_column,
            label_column,
            attributes,
            class_names,
            reference_date,
            missing_policy,
            drop_duplicate_images=False if keep_duplicates else None,
        )
        report = inspect_data(path, options, progress=not (quiet or as_json))
    except (ValueError, DataError) as error:
        problems = error.problems if isinstance(error, DataError) else [_usage_problem(error)]
        report = InspectReport(layout, str(path), 0, 0, {}, [], {}, {}, problems)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.print(report.render())
    if not report.ok:
        raise typer.Exit(1)


def _usage_problem(error: Exception) -> Any:
    from .data.problems import Problem

    return Problem("bad_option", "command line", str(error))


@data_app.command("split")
@guarded
def split_cmd(
    path: DataPath,
    out_file: Annotated[Path, typer.Option("--out", help="Splits file (JSON) to write.")] = Path("splits.json"),
    scheme: Annotated[str, typer.Option(help="holdout, kfold or repeated-kfold.")] = "kfold",
    folds: Annotated[int, typer.Option(help="Folds (k-fold schemes).")] = 5,
    repeats: Annotated[int, typer.Option(help="Repeats (repeated-kfold).")] = 3,
    val: Annotated[float, typer.Option(help="Validation fraction (of each fold's training part for k-fold).")] = 0.15,
    test: Annotated[float, typer.Option(help="Test fraction (holdout).")] = 0.2,
    seed: SeedOpt = 0,
    layout: LayoutOpt = "auto",
    csv: CsvOpt = None,
    spec: SpecOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Split patients (never cells) into train/validation/test and write a splits file."""
    from .data.splits import make_splits
    from .data.validation import load_cohort

    cohort = load_cohort(path, data_options(layout, csv, spec, check_images=False), progress=not quiet)
    plan = make_splits(cohort, scheme, folds=folds, repeats=repeats, val=val, test=test, seed=seed)  # type: ignore[arg-type]
    plan.save_new(out_file, overwrite)
    table = Table(title=f"{scheme} split of {len(cohort)} patients (seed {seed})")
    for col in ("fold", "train", "val", "test"):
        table.add_column(col, justify="right")
    for f in plan.folds:
        table.add_row(f.name, *(_class_mix(cohort, ids) for ids in (f.train, f.val, f.test)))
    out.print(table)
    out.print(f"wrote {out_file}")


def _class_mix(cohort: Any, ids: tuple[str, ...]) -> str:
    counts = {c: 0 for c in cohort.class_names}
    for i in ids:
        counts[cohort[i].label] += 1
    return f"{len(ids)} (" + " / ".join(str(v) for v in counts.values()) + ")"


@data_app.command("cache")
@guarded
def cache_cmd(
    path: DataPath,
    size: Annotated[int, typer.Option(help="Side the images are resized to.")] = 224,
    crop: Annotated[int | None, typer.Option(help="Keep the central CROP pixels after resizing.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache folder (default $SMEARMIL_CACHE_DIR or ~/.cache/smearmil).")
    ] = None,
    key: Annotated[str, typer.Option(help="stat (path, size, mtime) or content (file hashes).")] = "stat",
    layout: LayoutOpt = "auto",
    csv: CsvOpt = None,
    spec: SpecOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Decode every cell once into the memory-mapped image cache."""
    from .data.cache import build_cache
    from .data.images import Preprocessing
    from .data.validation import load_cohort

    cohort = load_cohort(path, data_options(layout, csv, spec), progress=not quiet)
    cache = build_cache(cohort, Preprocessing(size, crop), cache_dir, key, progress=not quiet)  # type: ignore[arg-type]
    out.print(f"{len(cache)} cells of {len(cache.patient_ids)} patients, {cache.shape[1]} px, in {cache.directory}")


@bench_app.command("cache")
@guarded
def bench_cache_cmd(
    path: DataPath,
    size: Annotated[int, typer.Option(help="Side the images are resized to.")] = 224,
    crop: Annotated[int | None, typer.Option(help="Central crop after resizing.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Time one epoch from the cache against decoding the same images; last line `ratio: N`."""
    from .bench import bench_cache
    from .data.images import Preprocessing

    result = bench_cache(path, data_options(layout), Preprocessing(size, crop), cache_dir, progress=not quiet)
    out.print(f"cells: {result.cells}")
    out.print(f"cache epoch: {result.cache_seconds:.3f} s ({result.cells / result.cache_seconds:,.0f} cells/s)")
    out.print(f"decode epoch: {result.decode_seconds:.3f} s ({result.cells / result.decode_seconds:,.0f} cells/s)")
    out.print(f"ratio: {result.ratio:.1f}")


ConfigOpt = Annotated[
    str,
    typer.Option(
        "--config",
        help=f"YAML file, preset ({', '.join(shipped_presets('run'))}) or a "
        "paper row (e.g. cnn-mean-k32, moe-p2-k32, mlp).",
    ),
]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Image cache folder.")]


def _run_config(config: str, layout: str, seed: int | None) -> Any:
    from .training.config import load_config

    overrides: dict[str, Any] = {}
    if layout != "auto":
        overrides["data"] = {"layout": layout}
    if seed is not None:
        overrides["seed"] = seed
    return load_config(config, overrides)


def _metrics_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    from .evaluation.compare import LABELS
    from .evaluation.metrics import METRICS

    table = Table(title=title)
    table.add_column("")
    for m in METRICS:
        table.add_column(LABELS[m], justify="right")
    for name, values in rows.items():
        table.add_row(name, *(_cell(values.get(m)) for m in METRICS))
    return table


def displayed_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    from .evaluation.metrics import displayed_metrics as shown

    return shown(summary)


def _cell(value: Any) -> str:
    from .evaluation.metrics import folds_note

    if isinstance(value, dict):
        mean, std = value.get("mean"), value.get("std")
        return "-" if mean is None else f"{mean:.3f}±{std or 0:.2f}{folds_note(value)}"
    return "-" if value is None else f"{value:.3f}"


@app.command()
@guarded
def train(
    path: DataPath,
    config: ConfigOpt = "cpu-cnn",
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/run"),
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Splits file (default: hold-out from the config).")
    ] = None,
    fold: Annotated[str | None, typer.Option("--fold", help="Fold of the splits file to train on.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the config's).")] = None,
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train one model on a patient-level hold-out split (resumes if OUT holds an interrupted run)."""
    from .data.splits import SplitPlan
    from .data.validation import load_cohort
    from .evaluation.runs import train_run

    cfg = _run_config(config, layout, seed)
    cohort = load_cohort(path, cfg.data, progress=not quiet)
    plan = SplitPlan.load(splits) if splits else None
    result = train_run(cohort, cfg, out_dir, plan, fold, cache_dir, progress=not quiet, overwrite=overwrite)
    rows = {f"{s} ({r['n_patients']} patients)": r["metrics"] for s, r in result["splits"].items()}
    out.print(_metrics_table(f"{cfg.name} on {path} (fold {result['fold']})", rows))
    out.print(f"run -> {out_dir} ({result['wall_seconds']:.0f} s)")


SeedsOpt = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Repeated CV: seeds such as 0,1,2 or 0-4 (one CV each in OUT/seed-<s>/; OUT/summary.json "
        "over seeds and folds). Replaces --seed.",
    ),
]


def _cv_runner(path: Path, config: str, layout: str, quiet: bool) -> tuple[Any, Any, Any]:
    """The cohort, the resolved config and a ``(seed, out, plan, overwrite) -> CVResult`` for any kind."""
    from .data.validation import load_cohort
    from .utils.config_files import config_kind

    overrides: dict[str, Any] = {"data": {"layout": layout}} if layout != "auto" else {}
    if config_kind(config) == "experts":
        from .evaluation.experts_cv import run_experts_cv
        from .training.experts_config import load_experts_config

        cfg = load_experts_config(config, overrides)
        run: Any = run_experts_cv
    else:
        from .evaluation.cv import run_cv

        cfg, run = _run_config(config, layout, None), run_cv
    cohort = load_cohort(path, cfg.data, progress=not quiet)
    return cohort, cfg, run


@app.command()
@guarded
def cv(
    path: DataPath,
    config: ConfigOpt = "cpu-cnn",
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    seeds: SeedsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (summary.json, predictions.csv).")] = Path(
        "runs/cv"
    ),
    splits: Annotated[Path | None, typer.Option("--splits", help="Splits file to use instead of new folds.")] = None,
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Cross-validate a config by patient: DIR/predictions.csv and DIR/summary.json."""
    from .data.splits import SplitPlan
    from .evaluation.repeated import parse_seeds, run_cv_seeds

    seed_list = parse_seeds(seeds) if seeds else None
    if seed_list and splits:
        raise typer.BadParameter("--seeds draws new folds per seed; it cannot be combined with --splits")
    cohort, cfg, run = _cv_runner(path, config, layout, quiet or as_json)
    plan = SplitPlan.load(splits) if splits else None
    progress = not (quiet or as_json)

    def one(s: int, folder: Path) -> dict[str, Any]:
        return run(cohort, cfg, folder, folds, s, cache_dir, plan, progress=progress, overwrite=overwrite).summary

    if seed_list:
        settings = {"config": cfg.model_dump(mode="json"), "folds": folds}
        summary = run_cv_seeds(seed_list, out_dir, one, settings, cohort.identity(), overwrite, progress)
    else:
        summary = one(seed, out_dir)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    where = f"{folds}-fold CV" + (f" x seeds {seeds}" if seed_list else "")
    out.print(
        _metrics_table(
            f"{cfg.name}: {where} on {path} (test folds, mean ± std)", {cfg.name: displayed_metrics(summary)}
        )
    )
    if seed_list:
        out.print(
            "per seed: "
            + ", ".join(
                f"{s} {m:.3f}"
                for s, m in zip(seed_list, summary["metrics"]["balanced_accuracy"]["seed_means"])
                if m is not None
            )
            + " (balanced accuracy)"
        )
    out.print(f"-> {out_dir}/summary.json ({summary['wall_seconds']:.0f} s)")


@app.command()
@guarded
def compare(
    path: DataPath,
    config: Annotated[
        str,
        typer.Option("--config", help=f"Comparison config: {', '.join(shipped_presets('compare'))} or a YAML file."),
    ] = "cpu-compare",
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    seeds: SeedsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/compare"),
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Run deep models and baselines on identical folds: comparison.csv/.md, summary.json, ROC plot."""
    from .data.validation import load_cohort
    from .evaluation.compare import load_compare_config, run_compare, run_compare_seeds
    from .evaluation.repeated import parse_seeds

    seed_list = parse_seeds(seeds) if seeds else None
    cfg = load_compare_config(config)
    cohort = load_cohort(path, cfg.data, progress=not (quiet or as_json))
    if seed_list:
        result = run_compare_seeds(
            cohort, cfg, out_dir, folds, seed_list, cache_dir, progress=not (quiet or as_json), overwrite=overwrite
        )
    else:
        result = run_compare(
            cohort, cfg, out_dir, folds, seed, cache_dir, progress=not (quiet or as_json), overwrite=overwrite
        )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    partial = result.get("partial_metrics", {})
    rows = {
        (name if name.endswith("]") else f"{name} [{m['data']}]"): displayed_metrics(
            {"metrics": m["metrics"], "partial_metrics": partial.get(name, {})}
        )
        for name, m in result["methods"].items()
    }
    out.print(_metrics_table(f"{folds}-fold CV on {path}: test folds, mean ± std", rows))
    out.print(f"-> {out_dir}/comparison.md, comparison.csv, summary.json, roc.png ({result['wall_seconds']:.0f} s)")


@app.command()
@guarded
def repeatability(
    run: Annotated[Path, typer.Argument(help="Run or CV folder.")],
    path: DataPath,
    sets: Annotated[int, typer.Option("--sets", help="Image sets drawn per patient.")] = 5,
    fraction: Annotated[float, typer.Option("--fraction", help="Share of a patient's cells in each set.")] = 0.5,
    given: Annotated[bool, typer.Option("--given", help="Use each patient's sub-folders as its image sets.")] = False,
    seed: SeedOpt = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {models: {name: {disagreement_rate, majority_vote_accuracy}}}.")
    ] = False,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Predict several image sets of each patient with every model of a run (the paper's Table 5)."""
    from .data.validation import load_cohort
    from .evaluation.repeatability import repeatability_plot, run_repeatability
    from .training.run_dir import RunDir

    cohort = load_cohort(path, RunDir(run).fold_models()[0].model.config.data, progress=not (quiet or as_json))
    result = run_repeatability(run, cohort, sets, fraction, seed, given, cache_dir, progress=not (quiet or as_json))
    repeatability_plot(result, run / "repeatability.png")
    if as_json:
        public = {
            "models": {
                name: {
                    "disagreement_rate": m["disagreement_rate"],
                    "majority_vote_accuracy": m["majority_vote_accuracy"],
                }
                for name, m in result["models"].items()
            }
        }
        sys.stdout.write(json.dumps(public, indent=2) + "\n")
        return
    table = Table(title=f"repeatability over {'given' if given else sets} image sets per patient (test patients)")
    for col in ("model", "patients", "intra-patient disagreement", "majority-vote accuracy", "mean std of P(true)"):
        table.add_column(col, justify="right")
    for name, m in result["models"].items():
        table.add_row(
            name,
            str(m["patients"]),
            f"{100 * m['disagreement_rate']:.1f}%",
            f"{m['majority_vote_accuracy']:.3f}",
            f"{m['p_true_std_mean']:.3f}",
        )
    out.print(table)
    out.print(f"-> {run}/repeatability.json, repeatability.csv, repeatability.png")


@app.command()
@guarded
def report(
    run: Annotated[Path, typer.Argument(help="Folder written by train, cv or compare.")],
    data: Annotated[Path | None, typer.Option("--data", help="Data set (default: the one the run recorded).")] = None,
    galleries: Annotated[int, typer.Option(help="Patients with cell galleries (misclassified first).")] = 3,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained report.html (and report.md) of a run."""
    from .report.html import build_report

    path = build_report(run, data, galleries, cache_dir, progress=not quiet)
    out.print(f"report -> {path}")


@app.command()
@guarded
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `smearmil train`.")],
    path: DataPath,
    split: Annotated[
        str, typer.Option(help="test or val (the run's own split), or all (every labelled patient).")
    ] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a trained run on a cohort; the output names the split."""
    from .data.validation import load_cohort
    from .evaluation.runs import evaluate_run
    from .training.trained import TrainedModel

    cohort = load_cohort(path, TrainedModel.load(run).config.data, progress=not (quiet or as_json))
    report = evaluate_run(run, cohort, split, cache_dir, progress=not (quiet or as_json))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out.print(_metrics_table(f"{run} on {path}", {f"{split} ({report['n_patients']} patients)": report["metrics"]}))


@app.command()
@guarded
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder written by `smearmil train`.")],
    patients: Annotated[list[Path], typer.Argument(help="One folder of cell images per patient.")],
    attributes: Annotated[
        Path | None, typer.Option("--attributes", help="CSV: id column + attributes (or DOB, LYMPH_COUNT).")
    ] = None,
    top: Annotated[int, typer.Option(help="How many cells to list, by weight.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Predict new patients: probability, label and the cells ranked by weight."""
    from .evaluation.runs import predict_folders

    results = predict_folders(run, patients, attributes, top)
    if as_json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        return
    for r in results:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in r["probabilities"].items())
        out.print(Text.assemble((str(r["patient"]), "bold"), ": ", (str(r["label"]), "green"), f" ({probs})"))
        for c in r["top_cells"]:
            out.print(f"    {c['weight']:.4f}  {c['file']}")


@app.command()
@guarded
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's outputs.")] = Path("smearmil-demo"),
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run the main job on the embedded synthetic cohort: simulate, inspect, split, cache, CV, compare, report."""
    from .demo import run_demo

    result = run_demo(out_dir, seed=seed, progress=not quiet, overwrite=overwrite)
    out.print(result.report.render())
    out.print(f"splits: {len(result.splits.folds)} folds by patient -> {result.out / 'splits.json'}")
    out.print(f"cache: {result.cached_cells} cells -> {result.cache_dir}")
    out.print(
        _metrics_table(
            f"{len(result.splits.folds)}-fold CV on the simulated cohort (test folds, mean ± std)",
            {name: displayed_metrics(s) for name, s in result.summaries.items()},
        )
    )
    out.print(f"comparison -> {result.out / 'comparison.md'}; resolved config -> {result.out / 'config.json'}")
    out.print(f"report -> {result.report_html}")


SSLConfigOpt = Annotated[
    str, typer.Option("--config", help=f"Pre-training preset ({', '.join(shipped_presets('ssl'))}) or YAML file.")
]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="SSL method: simclr, swav, dino or any registered one (`smearmil list`); default: the config's.",
    ),
]
HeadOpt = Annotated[
    str,
    typer.Option(
        "--head",
        help="Pooling of the MIL head (attention, gated_attention, mean, max, lse or any registered one: "
        "`smearmil list`), or a head config (YAML file with kind: head, or the cpu-head preset).",
    ),
]
HeadEpochsOpt = Annotated[int, typer.Option("--head-epochs", help="Epochs of the MIL head.")]
UmapOpt = Annotated[bool, typer.Option("--umap/--no-umap", help="UMAP plots of the test cells.")]
PretrainEpochsOpt = Annotated[
    int | None, typer.Option("--epochs", help="Pre-training epochs per fold (default: the config's).")
]
SupervisedOpt = Annotated[str, typer.Option("--supervised-config", help="Run config of the supervised encoder.")]


def _ssl_config(config: str, method: str | None, epochs: int | None, seed: int | None) -> Any:
    from .training.ssl.config import load_ssl_config

    overrides: dict[str, Any] = {}
    for key, value in (("method", method), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    return load_ssl_config(config, overrides)


def _head_config(head: str, epochs: int) -> Any:
    from .training.feature_mil import load_head_config

    return load_head_config(head, {"epochs": epochs})


def _fold_table(title: str, summary: dict[str, Any]) -> Table:
    table = Table(title=title)
    for col in ("fold", "test patients", "macro-F1", "bal. acc.", "accuracy"):
        table.add_column(col, justify="right" if col != "fold" else "left")
    for f in summary["folds"]:
        table.add_row(
            f["fold"], str(f["n_test"]), _cell(f["macro_f1"]), _cell(f["balanced_accuracy"]), _cell(f["accuracy"])
        )
    m = displayed_metrics(summary)
    table.add_row("mean ± std", "", _cell(m["macro_f1"]), _cell(m["balanced_accuracy"]), _cell(m["accuracy"]))
    return table


def _attention_table(summary: dict[str, Any]) -> Table | None:
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


@bench_app.command("memory")
@guarded
def bench_memory_cmd(
    cells: Annotated[int, typer.Option(help="Cells of the one bag predicted.")] = 5000,
    centring_cells: Annotated[int, typer.Option(help="Cells the mean-centring statistics are computed on.")] = 10000,
    size: Annotated[int, typer.Option(help="Cell side in pixels.")] = 224,
    budget_gb: Annotated[float, typer.Option(help="Memory budget.")] = 2.0,
    quiet: QuietOpt = False,
) -> None:
    """Peak RSS of predicting one large bag and of mean centring, each in a fresh process; last line
    `ratio: budget / peak`."""
    from .bench import bench_memory

    result = bench_memory(cells, centring_cells, size, budget_gb, progress=not quiet)
    out.print(f"python + torch + smearmil loaded: {result.baseline_mb:,.0f} MB")
    out.print(
        f"predict one bag of {result.inference_cells:,} cells at {size} px (cnn-mean-k32): "
        f"peak {result.inference_mb:,.0f} MB"
    )
    out.print(
        f"mean centring and PCA colour statistics of {result.centring_cells:,} cells at {size} px: "
        f"peak {result.centring_mb:,.0f} MB"
    )
    out.print(f"budget: {result.budget_mb:,.0f} MB")
    out.print(f"ratio: {result.ratio:.2f}")


@bench_app.command("heads")
@guarded
def bench_heads_cmd(
    features: Annotated[
        Path | None, typer.Argument(help="Feature folder (default: simulate 4 classes and embed).")
    ] = None,
    patients: Annotated[int, typer.Option(help="Simulated patients.")] = 100,
    cells: Annotated[str, typer.Option(help="Cells per simulated patient, MIN:MAX.")] = "16:64",
    folds: Annotated[int, typer.Option(help="Folds.")] = 5,
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = 40,
    goal_seconds: Annotated[float, typer.Option(help="Time goal of the whole CV.")] = 60.0,
    quiet: QuietOpt = False,
) -> None:
    """Wall time of a k-fold CV of a MIL head on cached features; last line `ratio: goal / measured`."""
    from .bench import bench_heads

    low, _, high = cells.partition(":")
    result = bench_heads(features, patients, (int(low), int(high or low)), folds, head, head_epochs, progress=not quiet)
    out.print(f"patients: {result.patients}, cells: {result.cells:,}, features ready in {result.prepare_seconds:.1f} s")
    out.print(
        f"{result.folds}-fold CV, {head} head, {head_epochs} epochs: {result.cv_seconds:.1f} s, "
        f"macro-F1 {result.macro_f1:.3f} (test folds)"
    )
    out.print(f"ratio: {goal_seconds / result.cv_seconds:.2f}")


@ssl_app.command("pretrain")
@guarded
def ssl_pretrain_cmd(
    paths: Annotated[
        list[Path], typer.Argument(metavar="DATA...", help="One or more data sets whose cells to learn from.")
    ],
    method: MethodOpt = None,
    config: SSLConfigOpt = "cpu-ssl",
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumes if it holds an interrupted run).")] = Path(
        "runs/ssl"
    ),
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (default: the config's).")] = None,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Splits file: learn from one fold's train+val patients only.")
    ] = None,
    fold: Annotated[str | None, typer.Option("--fold", help="Fold of --splits (default: the first).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the config's).")] = None,
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Pre-train a cell encoder without labels (SimCLR, SwAV or DINO): OUT/encoder.pt + encoder.json."""
    import time

    from .data.cache import build_cache
    from .data.splits import SplitPlan
    from .data.validation import load_cohort
    from .training.ssl.pretrain import CellSource, pretrain

    cfg = _ssl_config(config, method, epochs, seed)
    if splits is not None and len(paths) != 1:
        raise ValueError("--splits restricts one data set; pass exactly one DATA with it")
    sources = []
    for path in paths:
        cohort = load_cohort(path, data_options(layout), progress=not quiet)
        patients = None
        if splits is not None:
            plan = SplitPlan.load(splits)
            plan.check_cohort(cohort)
            chosen = plan.fold(fold)
            patients = list(chosen.train) + list(chosen.val)
        cache = build_cache(cohort, cfg.image.preprocessing, cache_dir, progress=not quiet)
        sources.append(CellSource(cache, patients, str(path), cohort.identity()))
    start = time.perf_counter()
    encoder = pretrain(sources, cfg, out_dir, progress=not quiet, overwrite=overwrite)
    cells = sum(s["cells"] for s in encoder.meta["sources"])
    out.print(
        f"{cfg.method.name} on {cells} cells, {cfg.epochs} epochs: final loss {encoder.meta.get('final_loss')} "
        f"({time.perf_counter() - start:.0f} s) -> {out_dir}/encoder.pt"
    )


def _load_encoder(spec: str) -> Any:
    """A saved encoder folder, a trained model folder, or ``random:<preset>`` for a random encoder of that
    preset's shape."""
    from .models.cell_encoder import CellEncoder
    from .training.trained import load_encoder

    if spec.startswith("random"):
        cfg = _ssl_config(spec.partition(":")[2] or "cpu-ssl", None, None, None)
        return CellEncoder.random(cfg.encoder, cfg.image.preprocessing, cfg.seed)
    return load_encoder(spec)


@ssl_app.command("evaluate")
@guarded
def ssl_evaluate_cmd(
    checkpoint: Annotated[
        str,
        typer.Argument(
            metavar="CKPT", help="Pre-training folder (or its encoder.pt), a trained model folder, or random[:PRESET]."
        ),
    ],
    path: DataPath,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for umap.png (default: beside CKPT).")] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours of the kNN classifier.")] = 10,
    test_size: Annotated[float, typer.Option("--test-size", help="Test share of the fixed stratified split.")] = 0.3,
    seed: SeedOpt = 0,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """kNN and linear-probe accuracy of frozen features on labelled single cells, and a UMAP plot by class."""
    from .data.cohort import CellSet
    from .data.validation import load
    from .evaluation.encoder_probe import evaluate_encoder

    encoder = _load_encoder(checkpoint)
    cells = load(path, DataOptions(), progress=not (quiet or as_json))
    if not isinstance(cells, CellSet):
        raise ValueError(f"{path} is not a single-cell data set (<class>/*.jpg with labels.csv)")
    target = out_dir or (
        Path(checkpoint).parent
        if Path(checkpoint).is_file()
        else Path(checkpoint)
        if Path(checkpoint).is_dir()
        else Path("runs/ssl-evaluate")
    )
    result = evaluate_encoder(encoder, cells, target, cache_dir, test_size, k, seed, progress=not (quiet or as_json))
    public = {key: result[key] for key in ("knn_accuracy", "linear_probe_accuracy", "n_train", "n_test")}
    if as_json:
        sys.stdout.write(json.dumps(public) + "\n")
        return
    out.print(f"kNN accuracy (k={k}): {public['knn_accuracy']:.3f}")
    out.print(f"linear-probe accuracy: {public['linear_probe_accuracy']:.3f}")
    out.print(f"train / test cells: {public['n_train']} / {public['n_test']} (chance {1 / len(cells.class_names):.3f})")
    out.print(f"UMAP -> {target / 'umap.png'}")


@features_app.command("extract")
@guarded
def features_extract_cmd(
    path: DataPath,
    encoder_spec: Annotated[
        str, typer.Option("--encoder", help="Pre-training folder, trained model folder, or random[:PRESET].")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Feature folder (features.npy + index.json).")] = Path(
        "runs/features"
    ),
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Embed every cell of a cohort with a frozen encoder; store embeddings, cell ids and cell types per patient."""
    from .data.cache import build_cache
    from .data.validation import load_cohort
    from .models.cell_encoder import extract_features

    encoder = _load_encoder(encoder_spec)
    cohort = load_cohort(path, data_options(layout), progress=not quiet)
    cache = build_cache(cohort, encoder.preprocessing, cache_dir, progress=not quiet)
    store = extract_features(encoder, cohort, cache, out_dir, progress=not quiet, overwrite=overwrite)
    out.print(f"{store.features.shape[0]} cells of {len(store.patient_ids)} patients, {store.dim}-d -> {out_dir}")


@features_app.command("cv")
@guarded
def features_cv_cmd(
    features: Annotated[
        Path, typer.Argument(metavar="FEATURES", help="Folder written by `smearmil features extract`.")
    ],
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = 40,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (summary.json, attention.csv, ...).")] = Path(
        "runs/features-cv"
    ),
    splits: Annotated[Path | None, typer.Option("--splits", help="Splits file to use instead of new folds.")] = None,
    umap: UmapOpt = True,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Cross-validate a MIL head on cached features: macro-F1 per fold, attention per cell and cell type."""
    from .data.features import FeatureStore
    from .data.splits import SplitPlan
    from .evaluation.feature_cv import run_head_cv, store_cv_stores

    store = FeatureStore(features)
    if store.encoder.get("sources") and not as_json:
        err_console.print(
            error_line(
                "this encoder was pre-trained on the cells of "
                f"{', '.join(s['data'] for s in store.encoder['sources'])}; if that includes test patients, "
                "use `smearmil ssl cv` (pre-training per fold) for an unbiased estimate",
                "note:",
                "yellow",
            )
        )
    plan = SplitPlan.load(splits) if splits else None
    result = run_head_cv(
        store.cohort(),
        store_cv_stores(store),
        _head_config(head, head_epochs),
        out_dir,
        folds,
        seed,
        plan,
        progress=not (quiet or as_json),
        name=f"{head} MIL on {features.name}",
        umap=umap,
        data_identity=store.identity(),
        overwrite=overwrite,
    )
    _print_head_summary(result.summary, f"{head} MIL on {features}: {folds}-fold CV (test folds)", out_dir, as_json)


def _print_head_summary(summary: dict[str, Any], title: str, out_dir: Path, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    out.print(_fold_table(title, summary))
    if (table := _attention_table(summary)) is not None:
        out.print(table)
    out.print(f"-> {out_dir}/summary.json, predictions.csv, attention.csv ({summary['wall_seconds']:.0f} s)")


@ssl_app.command("cv")
@guarded
def ssl_cv_cmd(
    path: DataPath,
    method: Annotated[
        str, typer.Option("--method", help="Encoder: random, supervised, or an SSL method (`smearmil list`).")
    ] = "simclr",
    config: SSLConfigOpt = "cpu-ssl",
    epochs: PretrainEpochsOpt = None,
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = 40,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/ssl-cv"),
    splits: Annotated[Path | None, typer.Option("--splits", help="Splits file to use instead of new folds.")] = None,
    supervised_config: SupervisedOpt = "cpu-attention",
    umap: UmapOpt = True,
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Per fold: encoder on the training patients' cells -> features -> MIL head -> test (resumable)."""
    from .data.splits import SplitPlan
    from .data.validation import load_cohort
    from .evaluation.ssl_cv import BASELINE_ENCODERS, run_encoder_cv

    ssl = _ssl_config(config, None if method in BASELINE_ENCODERS else method, epochs, seed)
    cohort = load_cohort(path, data_options(layout), progress=not (quiet or as_json))
    plan = SplitPlan.load(splits) if splits else None
    result = run_encoder_cv(
        cohort,
        method,
        ssl,
        _head_config(head, head_epochs),
        out_dir,
        folds,
        seed,
        plan,
        cache_dir,
        supervised_config,
        progress=not (quiet or as_json),
        umap=umap,
        overwrite=overwrite,
    )
    _print_head_summary(
        result.summary, f"{method} encoder + {head} MIL on {path}: {folds}-fold CV (test folds)", out_dir, as_json
    )


@ssl_app.command("compare")
@guarded
def ssl_compare_cmd(
    path: DataPath,
    encoders: Annotated[
        str | None,
        typer.Option("--encoders", help="Comma-separated encoders (default: random, supervised and every SSL method)."),
    ] = None,
    config: SSLConfigOpt = "cpu-ssl",
    epochs: PretrainEpochsOpt = None,
    head: HeadOpt = "attention",
    head_epochs: HeadEpochsOpt = 40,
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/ssl-compare"),
    supervised_config: SupervisedOpt = "cpu-attention",
    cache_dir: CacheDirOpt = None,
    layout: LayoutOpt = "auto",
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
) -> None:
    """Encoders through the same MIL head on identical folds; prints macro-F1 mean and std across folds."""
    from .data.validation import load_cohort
    from .evaluation.ssl_cv import encoder_kinds, run_encoder_comparison

    kinds = encoder_kinds() if encoders is None else (_split_list(encoders) or [])
    unknown = [k for k in kinds if k not in encoder_kinds()]
    if unknown or not kinds:
        raise ValueError(f"--encoders: unknown {unknown or 'empty list'}; choose from {', '.join(encoder_kinds())}")
    ssl = _ssl_config(config, None, epochs, seed)
    cohort = load_cohort(path, data_options(layout), progress=not (quiet or as_json))
    result = run_encoder_comparison(
        cohort,
        kinds,
        ssl,
        _head_config(head, head_epochs),
        out_dir,
        folds,
        seed,
        cache_dir,
        supervised_config,
        progress=not (quiet or as_json),
        overwrite=overwrite,
    )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    table = Table(title=f"encoders + {head} MIL on {path}: {folds}-fold CV (test folds)")
    for col in ("encoder", "macro-F1 mean", "macro-F1 std", "per fold"):
        table.add_column(col, justify="left" if col in ("encoder", "per fold") else "right")
    for kind, r in result["encoders"].items():
        table.add_row(
            kind,
            f"{r['macro_f1']['mean']:.3f}",
            f"{r['macro_f1']['std']:.3f}",
            " ".join(f"{v:.2f}" for v in r["folds_macro_f1"]),
        )
    out.print(table)
    out.print(f"-> {out_dir}/comparison.csv, summary.json ({result['wall_seconds']:.0f} s)")


def main() -> None:  # pragma: no cover - console entry point
    app()
