"""Commands that train, judge and use models: train, cv, compare, evaluate, predict, repeatability, report, demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..utils.config_files import shipped_presets
from ..utils.progress import console as err_console
from .app import app, error_line, guarded, out
from .flags import (
    CacheDirOpt,
    ConfigFlags,
    ConfigOpt,
    ConfigSeedOpt,
    DataFlags,
    DataPath,
    FoldsOpt,
    OverwriteOpt,
    QuietOpt,
    RunPath,
    SeedOpt,
    SetsFileOpt,
    SetsModeOpt,
    SplitsOpt,
    TableJsonOpt,
    config_flags,
    data_flags,
)
from .tables import displayed_metrics, metrics_table

SeedsOpt = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Repeated CV: seeds such as 0,1,2 or 0-4 (one CV each in OUT/seed-<s>/; OUT/summary.json "
        "over seeds and folds). Replaces --seed.",
    ),
]


def method_config(config: str, data: DataFlags, flags: ConfigFlags, seed: int | None = None) -> Any:
    """The validated config of any registered method kind, with the command line on top; nothing that
    fits it is imported yet, so a bad config is reported at once."""
    from ..training.methods import load_method_config
    from ..utils.config_files import config_kind, merge_dicts

    kind = config_kind(config)
    overrides: dict[str, Any] = {"data": data.given()} if data.given() else {}
    if seed is not None:
        overrides["seed"] = seed
    cfg = load_method_config(config, merge_dicts(overrides, flags.overrides(kind)))
    flags.show(cfg)
    return cfg


def built_method(cfg: Any) -> Any:
    """The method that fits ``cfg`` (this imports torch, Lightning or scikit-learn as it needs)."""
    from ..training.methods import method_of

    return method_of(cfg)


@app.command()
@guarded
@data_flags
@config_flags
def train(
    path: DataPath,
    config: ConfigOpt = "cpu-fusion",
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder.")] = Path("runs/run"),
    all_patients: Annotated[
        bool,
        typer.Option(
            "--all",
            help="A final model on every labelled patient (validation for early stopping drawn inside; "
            "no test split: judge the config by `smearmil cv` first).",
        ),
    ] = False,
    splits: Annotated[
        Path | None, typer.Option("--splits", help="Splits file (default: hold-out from the config).")
    ] = None,
    fold: Annotated[str | None, typer.Option("--fold", help="Fold of the splits file to train on.")] = None,
    seed: ConfigSeedOpt = None,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Train one model: on a patient-level hold-out split, or with --all on every labelled patient
    (resumes if OUT holds an interrupted run)."""
    from ..data.splits import SplitPlan
    from ..data.validation import load_cohort

    cfg = method_config(config, data, flags, seed)
    cohort = load_cohort(path, cfg.data, progress=not quiet)
    plan = SplitPlan.load(splits) if splits else None
    method = built_method(cfg)
    from ..protocols.runs import train_run

    result = train_run(
        cohort,
        method,
        out_dir,
        plan,
        fold,
        cache_dir,
        progress=not quiet,
        overwrite=overwrite,
        all_patients=all_patients,
    )
    rows = {f"{s} ({r['n_patients']} patients)": r["metrics"] for s, r in result["splits"].items() if r["n_patients"]}
    if rows:
        out.print(metrics_table(f"{method.name} on {path} (fold {result['fold']})", rows, cohort.class_names))
    else:
        out.print(f"{method.name} trained on every labelled patient: nothing held out to score")
    if result["choices"]:
        out.print("chosen inside the training patients: " + _choices_text(result["choices"]))
    out.print(f"run -> {out_dir} ({result['wall_seconds']:.0f} s)")


def _choices_text(choices: dict[str, Any]) -> str:
    """What a method chose, in one line (the experts, the fusion, the threshold)."""
    shown = []
    for key in ("image_expert", "attributes_expert", "fusion_choice"):
        if isinstance(choices.get(key), dict):
            shown.append(f"{key.replace('_choice', '')} {choices[key]['chosen']}")
    if "fusion" in choices and "fusion_choice" not in choices:
        shown.append(f"fusion {choices['fusion']}")
    if "threshold" in choices:
        shown.append(f"threshold {choices['threshold']:.3f}")
    return ", ".join(shown) or "-"


@app.command()
@guarded
@data_flags
@config_flags
def cv(
    path: DataPath,
    config: ConfigOpt = "cpu-fusion",
    folds: FoldsOpt = 5,
    seed: SeedOpt = 0,
    seeds: SeedsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (summary.json, predictions.csv).")] = Path(
        "runs/cv"
    ),
    splits: SplitsOpt = None,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
    as_json: TableJsonOpt = False,
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Cross-validate a config by patient: OUT/predictions.csv and OUT/summary.json; OUT then predicts new
    patients as the ensemble of its fold models (`smearmil predict OUT ...`), a repeated CV (--seeds) as
    the ensemble of every fold of every seed."""
    from ..data.splits import SplitPlan
    from ..data.validation import load_cohort
    from ..protocols.repeated import parse_seeds

    seed_list = parse_seeds(seeds) if seeds else None
    if seed_list and splits:
        raise typer.BadParameter("--seeds draws new folds per seed; it cannot be combined with --splits")
    cfg = method_config(config, data, flags)
    progress = not (quiet or as_json)
    cohort = load_cohort(path, cfg.data, progress=progress)
    plan = SplitPlan.load(splits) if splits else None
    method = built_method(cfg)
    from ..protocols.cv import CVSettings, run_cv
    from ..protocols.repeated import run_cv_seeds

    def one(s: int, folder: Path) -> dict[str, Any]:
        return run_cv(cohort, method, folder, CVSettings(folds, s, plan, cache_dir, progress, overwrite)).summary

    if seed_list:
        settings = {"config": method.settings(), "folds": folds}
        summary = run_cv_seeds(seed_list, out_dir, one, settings, cohort.identity(), overwrite, progress)
    else:
        summary = one(seed, out_dir)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    where = f"{folds}-fold CV" + (f" x seeds {seeds}" if seed_list else "")
    out.print(
        metrics_table(
            f"{cfg.name}: {where} on {path} (test folds, mean ± std)",
            {cfg.name: displayed_metrics(summary)},
            cohort.class_names,
        )
    )
    if seed_list:
        per_seed = zip(seed_list, summary["metrics"]["balanced_accuracy"]["seed_means"])
        out.print(
            "per seed: " + ", ".join(f"{s} {m:.3f}" for s, m in per_seed if m is not None) + " (balanced accuracy)"
        )
    out.print(f"-> {out_dir}/summary.json ({summary['wall_seconds']:.0f} s)")


@app.command()
@guarded
@data_flags
@config_flags
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
    data: DataFlags = DataFlags(),
    flags: ConfigFlags = ConfigFlags(),
) -> None:
    """Run deep models and baselines on identical folds: comparison.csv/.md, summary.json, ROC plot."""
    from ..data.validation import load_cohort
    from ..protocols.repeated import parse_seeds
    from ..training.config.compare import CompareConfig
    from ..utils.config_files import load_config_file

    seed_list = parse_seeds(seeds) if seeds else None
    overrides = {"data": data.given()} if data.given() else {}
    checked = load_config_file(config, CompareConfig, "compare", {**overrides, **flags.overrides("compare")})
    if flags.print_config:
        from ..protocols.compare import with_data_labels

        flags.show(with_data_labels(checked))
    progress = not (quiet or as_json)
    cohort = load_cohort(path, checked.data, progress=progress)
    from ..protocols.compare import run_compare, run_compare_seeds, with_data_labels
    from ..protocols.cv import CVSettings

    cfg = with_data_labels(checked)
    if seed_list:
        result = run_compare_seeds(
            cohort, cfg, out_dir, seed_list, CVSettings(folds, 0, None, cache_dir, progress, overwrite)
        )
    else:
        result = run_compare(cohort, cfg, out_dir, CVSettings(folds, seed, None, cache_dir, progress, overwrite))
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
    out.print(metrics_table(f"{folds}-fold CV on {path}: test folds, mean ± std", rows, cohort.class_names))
    out.print(f"-> {out_dir}/comparison.md, comparison.csv, summary.json, roc.png ({result['wall_seconds']:.0f} s)")


def _model_data(run: Path, data: DataFlags) -> Any:
    """How to read new patients for the model of ``run`` (its classes and attributes; labels optional),
    with the command line's data options on top."""
    from ..training.predictor import load_predictor

    predictor = load_predictor(run)
    return data.options(predictor.data.for_new_patients(predictor.class_names))


@app.command()
@guarded
@data_flags
def repeatability(
    runs_and_data: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN... DATA",
            help="One run (its model and, for a fusion, the experts inside it), or several runs (one row each: "
            "the standalone CNN, MLP, AVG, MOE, ...), then the data set.",
        ),
    ],
    mode: SetsModeOpt = "auto",
    sets: Annotated[int, typer.Option("--sets", help="Random image sets drawn per patient.")] = 5,
    fraction: Annotated[float, typer.Option("--fraction", help="Share of a patient's cells in each random set.")] = 0.5,
    given: Annotated[bool, typer.Option("--given", help="Same as --mode given.")] = False,
    sets_file: SetsFileOpt = None,
    experts: Annotated[
        bool | None,
        typer.Option("--experts/--no-experts", help="Rows for the experts inside a fusion (default: with one run)."),
    ] = None,
    seed: SeedOpt = 0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print {models: {name: {disagreement_rate, majority_vote_accuracy, mean_set_disagreement, "
            "set_accuracy, majority_ties}}}.",
        ),
    ] = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for repeatability.json/.csv/.png (default: RUN).")
    ] = None,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Predict several image sets of each patient (the paper's Table 5): its acquisitions when given, else
    random subsets, labelled so; each patient by the models that did not train on it."""
    from ..data.validation import load_cohort

    if len(runs_and_data) < 2:
        raise typer.BadParameter("give one or more runs, then the data set")
    runs, path = runs_and_data[:-1], runs_and_data[-1]
    if given or sets_file is not None:
        mode = "given"
    cohort = load_cohort(path, _model_data(runs[0], data), progress=not (quiet or as_json))
    from ..protocols.repeatability import (
        REPEATABILITY_FIGURES,
        read_acquisitions,
        repeatability_plot,
        run_repeatability,
    )

    target = out_dir or runs[0]
    progress = not (quiet or as_json)
    acquisitions = read_acquisitions(sets_file) if sets_file is not None else None
    result = run_repeatability(
        runs, cohort, sets, fraction, seed, mode, cache_dir, progress, target, acquisitions, experts
    )
    repeatability_plot(result, target / "repeatability.png")
    if as_json:
        public = {"models": {name: {k: m[k] for k in REPEATABILITY_FIGURES} for name, m in result["models"].items()}}
        sys.stdout.write(json.dumps(public, indent=2) + "\n")
        return
    table = Table(title=f"repeatability over {result['image_sets']} ({result['split']})")
    columns = (
        "model",
        "patients",
        "sets disagreeing (mean)",
        "sets right",
        "majority right",
        "patients with any disagreement",
    )
    for col in (*columns, "mean std of P(true)"):
        table.add_column(col, justify="right")
    for name, m in result["models"].items():
        table.add_row(
            name,
            str(m["patients"]),
            f"{100 * m['mean_set_disagreement']:.0f}%",
            f"{100 * m['set_accuracy']:.0f}%",
            f"{m['majority_vote_accuracy']:.3f}" + (f" ({m['majority_ties']} ties)" if m["majority_ties"] else ""),
            f"{100 * m['disagreement_rate']:.0f}%",
            f"{m['p_true_std_mean']:.3f}",
        )
    out.print(table)
    out.print(f"-> {target}/repeatability.json, repeatability.csv, repeatability.png")


@app.command()
@guarded
def report(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Folder written by train, cv, compare, predict, features or ssl cv.")
    ],
    data_set: Annotated[
        Path | None, typer.Option("--data", help="Data set (default: the one the run recorded).")
    ] = None,
    galleries: Annotated[
        int, typer.Option("--galleries", help="Patients with cell galleries (misclassified first).")
    ] = 3,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a self-contained report.html (and report.md) of a run."""
    from ..utils.outputs import require_output_folder

    require_output_folder(run)  # at once: the report's imports take seconds
    from ..report.html import build_report

    path = build_report(run, data_set, galleries, cache_dir, progress=not quiet)
    out.print(f"report -> {path}")


@app.command()
@guarded
@data_flags
def evaluate(
    run: RunPath,
    path: DataPath,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="auto (the run's test split on its own cohort, every labelled patient of another), test or "
            "val (the run's own split), or all (every labelled patient).",
        ),
    ] = "auto",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for predictions.csv (default: RUN/evaluate-<cohort>-<split>)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Evaluate a train run, a cv folder (ensemble) or a features run on a cohort; the output names the patients."""
    from ..data.validation import load_cohort

    progress = not (quiet or as_json)
    cohort = load_cohort(path, _model_data(run, data), progress=progress)
    from ..protocols.runs import evaluate_run

    result = evaluate_run(run, cohort, split, cache_dir, progress, out_dir)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out.print(
        metrics_table(
            f"{run} on {path}",
            {f"{result['split']} ({result['n_patients']} patients)": result["metrics"]},
            cohort.class_names,
        )
    )
    out.print(f"per patient -> {result['predictions']}")


@app.command()
@guarded
@data_flags
def predict(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN", help="Folder written by `train` (--all), `cv` (an ensemble) or `features train`."
        ),
    ],
    patients: Annotated[
        list[Path],
        typer.Argument(metavar="DATA_OR_PATIENT_DIRS", help="A data set in any layout, or patient folders of cells."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for predictions.csv, cells.csv, run.json.")] = Path(
        "runs/predict"
    ),
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            help="Cells per patient, each way (most for, most against): printed when given, in --json always "
            "(default 3).",
        ),
    ] = None,
    band: Annotated[
        float,
        typer.Option(
            "--band",
            min=0.0,
            max=0.5,
            help="A call is flagged uncertain when the positive class's probability lies within this of the "
            "threshold (more classes: the two likeliest within twice this).",
        ),
    ] = 0.10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON.")] = False,
    cache_dir: CacheDirOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the closing tally (no table, no progress bars).")
    ] = False,
    overwrite: OverwriteOpt = False,
    data: DataFlags = DataFlags(),
) -> None:
    """Predict new patients (labels optional): a worklist of calls, each cell's signed contribution in cells.csv.

    Prints each patient's call and probability, flags the calls inside the uncertainty band, closes with
    a tally, and warns when no patient is called with confidence (a model at chance). For patient
    folders, --attributes FILE names their clinical table (an id column plus attributes, or DOB and
    LYMPH_COUNT); sub-folders name cell types. A cell's contribution is in logit units; positive pushes
    the patient toward the `toward_class` column (the positive class for two classes)."""
    import logging

    from ..data.validation import load_patients
    from ..protocols.predict import load_predictor, predict_to
    from .worklist import annotate, print_worklist

    attributes_file = Path(data.attributes) if data.attributes and Path(data.attributes).is_file() else None
    if attributes_file is not None:
        data.attributes = None
    predictor = load_predictor(run)
    progress = not (quiet or as_json)
    options = data.options(predictor.data.for_new_patients(predictor.class_names))
    cohort = load_patients(patients, options, attributes_file, progress)
    unreadable = [p for p in cohort.problems if p.kind == "unreadable_image"]  # load_patients warned of them
    logging.getLogger("smearmil").setLevel(logging.WARNING)
    result = predict_to(predictor, cohort, out_dir, cache_dir, progress, overwrite)
    cells = _cells_by_patient(out_dir / "cells.csv")
    shown = 3 if top is None else top
    for row in result["patients"]:
        ranked = sorted(cells.get(row["patient"], []), key=lambda c: -c[1])
        row["top_cells"] = [{"file": f, "contribution": v} for f, v in ranked[:shown]]
        row["bottom_cells"] = [{"file": f, "contribution": v} for f, v in ranked[::-1][:shown]]
        row["skipped"] = [p.where for p in unreadable if p.message.startswith(f"patient {row['patient']}:")]
    found = annotate(result, band)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_worklist(out, result, found, out_dir, band, quiet, top, cohort.root)
    if result["chance_warning"]:
        err_console.print(error_line(result["chance_warning"], "warning:", "yellow"))


def _cells_by_patient(path: Path) -> dict[str, list[tuple[str, float]]]:
    from ..utils.spreadsheet import read_rows

    found: dict[str, list[tuple[str, float]]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for r in read_rows(handle):
            found.setdefault(r["patient"], []).append((r["file"], float(r["logit_contribution_toward_class"])))
    return found


@app.command()
@guarded
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's outputs.")] = Path("smearmil-demo"),
    seed: SeedOpt = 0,
    quiet: QuietOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run the main job on the embedded synthetic cohort: simulate, inspect, split, cache, CV, compare, report."""
    from ..demo import estimated_seconds, run_demo

    if not quiet:
        minutes = max(0.5, round(estimated_seconds() / 30) / 2)  # to the half minute
        err_console.print(f"demo: about {minutes:g} min on this machine now (3 min on 2 idle cores)")
    result = run_demo(out_dir, seed=seed, progress=not quiet, overwrite=overwrite, say=out.print)
    out.print(
        metrics_table(
            f"{len(result.splits.folds)}-fold CV on the simulated cohort (test folds, mean ± std)",
            {name: displayed_metrics(s) for name, s in result.summaries.items()},
        )
    )
    out.print(f"comparison -> {result.out / 'comparison.md'}; resolved config -> {result.out / 'config.json'}")
    out.print(f"report -> {result.report_html}")
