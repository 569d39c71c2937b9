"""``smearmil reproduce``: one of the papers' tables, its rows run on identical folds, the published figures
beside ours and a note on what differs (data, budget).

Tables of Sahasrabudhe et al. 2021: ``table2`` (the deep MIL models), ``table3`` (classifiers on the clinical
attributes), ``table4`` (hand-crafted features with classical MIL, attention MIL), ``table5`` (repeatability
over image sets); of the second paper (self-supervised MIL for AML subtypes): ``aml-encoders`` (encoders
through the same attention MIL head). ``budget="paper"`` runs the faithful presets (a GPU's work);
``budget="cpu"`` the CPU preset of every deep row (smaller K and images, fewer steps), and says so."""

from __future__ import annotations

import csv
import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.cohort import Cohort
from ..data.options import DataOptions
from ..models.specs import all_stage_names
from ..training.config import PAPER, load_config
from ..training.config.compare import CompareConfig, MethodSpec
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.config_files import merge_dicts
from ..utils.outputs import claim_output, run_fingerprint
from .compare import method_folder, run_compare, with_data_labels
from .cv import CVSettings
from .paper_tables import BUDGETS, TABLE_NAMES, Budget
from .side_by_side import table_csv, table_markdown

SECOND_PAPER = (
    "Kazeminia et al. 2024, Self-supervised multiple instance learning for acute myeloid leukemia "
    "classification (arXiv 2403.05379)"
)
BINARY = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy")
REPEATABILITY = ("mean_set_disagreement", "set_accuracy", "majority_vote_accuracy", "disagreement_rate")
ENCODERS = ("macro_f1", "balanced_accuracy")
# the second paper's rows by what each encoder learnt from: its supervised baseline is trained on single-cell
# labels; an encoder trained by a MIL model on patient labels is ours, not the paper's
ENCODER_ROWS = {
    "single-cell": "supervised (single-cell labels): the paper's baseline",
    "supervised": "patient-label MIL encoder (not in the paper)",
    "random": "random encoder (not in the paper)",
}
# fine-tuned (the paper's protocol), a random start is the MIL model trained from scratch
FINETUNED_ROWS = {**ENCODER_ROWS, "random": "no pre-training: the MIL model from scratch (not in the paper)"}


@dataclass(frozen=True)
class Row:
    """One row of a paper's table, named as the paper names it: its method at the paper's budget and, when
    it differs, at the CPU budget. ``paper`` None: a published-only row (the biologists); ``why`` says why a
    row is not run at the CPU budget (``cpu`` None)."""

    name: str
    data: str  # what the method sees, as the paper's table says (imgs, attrs, imgs+attrs)
    paper: dict[str, Any] | None
    cpu: dict[str, Any] | None = None
    why: str = ""

    def spec(self, budget: Budget, overrides: dict[str, Any] | None = None) -> MethodSpec | None:
        """The method at ``budget`` (None: not run at it); ``overrides`` go on top of a deep row's config."""
        fields = self.paper if budget == "paper" else self.cpu
        if fields is None:
            return None
        fields = dict(fields)
        if overrides and "config" in fields:
            fields["overrides"] = merge_dicts(fields.get("overrides", {}), overrides)
        return MethodSpec(name=self.name, **fields)

    def not_run(self, budget: Budget) -> str | None:
        """Why the row has no figure of ours at ``budget`` (None: it runs)."""
        if self.paper is None:
            return self.why or "published only"
        return None if self.spec(budget) is not None else self.why


CPU_PRESETS = {
    "cnn": "cpu-cnn",
    "avg": "cpu-avg",
    "moe-p1": "cpu-moe-cnn",
    "moe-p2": "cpu-moe-cnn",
    "moe-p3": "cpu-moe-cnn",
}
CPU_K = 8  # the width of every CPU preset's ResNet-K
WIDE = "ResNet-K wider than the CPU presets' K=8 at 224 px: run `--budget paper` (a GPU)"
STANDS_IN = "one CPU-sized model (K=8) stands for K=32 and K=64: see the K=32 row; `--budget paper` runs both"
# P2 and P3 at P1's budget (cpu-moe-cnn: 25 passes over the images): 20 in the CNN stage, 5 in the last
EQUAL_BUDGET_STAGES = {"cnn": {"epochs": 20, "lr_steps": [15]}, "moe": {"epochs": 5, "lr_steps": []}}
POOL_NAMES = {"max": "f_Max", "mean": "f_Mean", "lse": "f_LSE"}
WIDTHS = (8, 16, 32, 64)


def _deep_row(kind: str, pool: str, k: int, cpu_k: int | None) -> Row:
    """The paper's row of ``kind`` (cnn, avg, moe-p1..3) with ``pool`` and width ``k``; at the CPU budget
    the CPU preset runs in the row of width ``cpu_k`` (the others say why not)."""
    name = f"{kind.upper()} {POOL_NAMES[pool]} K={k}"
    data = "imgs" if kind == "cnn" else "imgs, attrs"
    paper = {"config": f"{kind}-{pool}-k{k}"}
    if k != cpu_k:
        return Row(name, data, paper, None, STANDS_IN if cpu_k == 32 else WIDE)
    overrides: dict[str, Any] = {"model": {"pooling": {"name": pool}}}
    if kind.startswith("moe"):
        overrides["model"]["paradigm"] = kind[-2:].upper()
        if kind != "moe-p1":
            overrides["train"] = {"stages": EQUAL_BUDGET_STAGES}
    return Row(name, data, paper, {"config": CPU_PRESETS[kind], "overrides": overrides})


def _attention_row(k: int) -> Row:
    paper = {"config": f"cnn-attention-k{k}"}
    cpu = {"config": "cpu-attention"} if k == 32 else None
    return Row(f"DeepMIL K={k}", "imgs", paper, cpu, "" if cpu else STANDS_IN)


def _clinical(name: str, baseline: str) -> Row:
    spec = {"baseline": baseline}
    return Row(name, "attrs", spec, spec)


BIOLOGISTS = Row("Biologists", "imgs, attrs", None, why="the twelve biologists' reading of the paper's test cohort")
CLINICAL = tuple(
    _clinical(name, f"clinical/{baseline}")
    for name, baseline in (
        ("AdaBoost", "adaboost"),
        ("SVM", "svm"),
        ("Decision Trees", "tree"),
        ("Random Forest", "rf"),
        ("Gaussian Naive Bayes", "gnb"),
        ("Gradient Boosting", "gboost"),
    )
)
MLP = Row("MLP", "attrs", {"config": "mlp"}, {"config": "cpu-mlp"})
# the paper's classical approach: hand-crafted features with its best classical MIL (SPEC-MIL)
CLASSICAL = tuple(
    Row(f"Classical Approach ({data})", data.replace("+", ", "), spec, spec)
    for data in ("imgs", "imgs+attrs")
    for spec in [{"baseline": "mil/specialising", "data": data}]
)
MEAN_ROWS = tuple(
    _deep_row(kind, "mean", k, 32) for k in (32, 64) for kind in ("cnn", "avg", "moe-p1", "moe-p2", "moe-p3")
)


@dataclass(frozen=True)
class TableSpec:
    paper: str
    title: str
    kind: Literal["compare", "repeatability", "encoders"]
    rows: tuple[Row, ...] = ()
    metrics: tuple[str, ...] = BINARY


TABLES: dict[str, TableSpec] = {
    "table2": TableSpec(
        PAPER,
        "Table 2: ROC-AUC of CNN and AVG with each pooling and width K, and MOE-P1 with mean pooling",
        "compare",
        (
            *(
                _deep_row(kind, pool, k, CPU_K)
                for kind in ("cnn", "avg")
                for k in (8, 16, 32, 64)
                for pool in POOL_NAMES
            ),
            *(_deep_row("moe-p1", "mean", k, CPU_K) for k in WIDTHS),
        ),
        ("roc_auc",),
    ),
    "table3": TableSpec(
        PAPER,
        "Table 3: every method, sensitivity, specificity, accuracy and balanced accuracy",
        "compare",
        (BIOLOGISTS, *CLINICAL, MLP, *CLASSICAL, _attention_row(32), _attention_row(64), *MEAN_ROWS),
        ("sensitivity", "specificity", "accuracy", "balanced_accuracy"),
    ),
    "table4": TableSpec(
        PAPER,
        "Table 4: ROC-AUC of every method (mean pooling; no AVG)",
        "compare",
        (
            BIOLOGISTS,
            *CLINICAL,
            MLP,
            *CLASSICAL,
            _attention_row(32),
            _attention_row(64),
            *(row for row in MEAN_ROWS if not row.name.startswith("AVG")),
        ),
        ("roc_auc",),
    ),
    "table5": TableSpec(
        PAPER,
        "Table 5: repeatability, each patient's image sets predicted by the best CNN, the MLP and MOE-P1",
        "repeatability",
        (
            Row("CNN f_Mean K=64", "imgs", {"config": "cnn-mean-k64"}, {"config": "cpu-cnn"}),
            MLP,
            Row(
                "MOE-P1 f_Mean K=64",
                "imgs, attrs",
                {"config": "moe-p1-k64"},
                {"config": "cpu-moe-cnn", "overrides": {"model": {"paradigm": "P1"}}},
            ),
        ),
        REPEATABILITY,
    ),
    "aml-encoders": TableSpec(
        SECOND_PAPER,
        "Encoder comparison: random, supervised and self-supervised encoders through one attention MIL head "
        "(the paper's text here has no results table: no published figure)",
        "encoders",
        metrics=ENCODERS,
    ),
}
assert tuple(TABLES) == TABLE_NAMES, "protocols.paper_tables names the tables the CLI lists"


@dataclass(frozen=True)
class Published:
    """A figure set of one row: ``{metric: value}`` and where it was read."""

    row: str
    metrics: dict[str, float]
    source: str


def row_names(table: str) -> list[str]:
    """The rows ``table`` reports, as the paper names them."""
    spec = TABLES[table]
    if spec.kind == "encoders":
        from .ssl_cv import encoder_kinds

        return [ENCODER_ROWS.get(kind, kind) for kind in encoder_kinds()]
    return [row.name for row in spec.rows]


def _row_of_model(table: str, model: str) -> str:
    """The row a repeatability model (named by its kind: CNN, MLP, MOE) stands in."""
    for row in TABLES[table].rows:
        if row.name.split()[0].split("-")[0] == model.split()[0]:
            return row.name
    return model


@functools.cache
def _published_data() -> dict[str, Any]:
    """``published.yaml``, read once."""
    return yaml.safe_load(resources.files(__package__).joinpath("published.yaml").read_text(encoding="utf-8"))


def paper_notes(table: str) -> list[str]:
    """Where the paper's own figures of ``table`` disagree or cannot be what they say (``published.yaml``)."""
    return list(_published_data().get("notes", {}).get(table, []))


def _stored_figures(table: str) -> dict[str, Published]:
    """The figures of ``table`` in the package's ``published.yaml``, by row."""
    data = _published_data()
    return {
        entry["row"]: Published(entry["row"], dict(entry["metrics"]), data["sources"][entry["source"]])
        for entry in data["figures"]
        if table in entry["tables"]
    }


def published_figures(table: str, extra: Path | None = None) -> list[Published]:
    """The package's published figures for ``table`` (``published.yaml``), then a user's CSV (columns table,
    row, metric, value, source) on top; every line of the CSV is checked (table, row, metric, a value in
    [0, 1], no line twice)."""
    found = _stored_figures(table)
    if extra is None:
        return list(found.values())
    seen: dict[tuple[str, str, str], int] = {}
    for n, record in enumerate(_read_figures(extra), start=2):
        where = f"{extra}, row {n}"
        name, row, metric = record["table"], record["row"], record["metric"]
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table {name!r}; use one of {', '.join(TABLES)}")
        shown = TABLES[name].metrics
        if metric not in shown:
            raise ValueError(f"{where}: {name} shows {', '.join(shown)}, not {metric!r}")
        rows = [*row_names(name), *_stored_figures(name)]
        if row not in rows:
            raise ValueError(f"{where}: {row!r} is not a row of {name}; its rows: {'; '.join(rows)}")
        try:
            value = float(record["value"])
        except ValueError:
            raise ValueError(f"{where}: value {record['value']!r} is not a number") from None
        if not 0 <= value <= 1:
            raise ValueError(f"{where}: {value} is not in [0, 1] (a percentage? write {value / 100:g})")
        key = (name, row, metric)
        if key in seen:
            raise ValueError(f"{where}: {name} / {row} / {metric} is given twice (rows {seen[key]} and {n})")
        seen[key] = n
        if name == table:
            old = found.get(row)
            metrics = {**(old.metrics if old else {}), metric: value}
            found[row] = Published(row, metrics, record.get("source") or str(extra))
    return list(found.values())


def _read_figures(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"table", "row", "metric", "value"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: missing columns {', '.join(sorted(missing))} (want table,row,metric,value,source)"
            )
        return [{k: (v or "").strip() for k, v in r.items() if k} for r in reader]


def _encoder_text(encoder: dict[str, Any]) -> str:
    name = encoder.get("name")
    return f"ResNet-K with K={encoder.get('k')}" if name == "resnetk" else str(name)


def budget_note(spec: MethodSpec) -> str | None:
    """What a deep row trains: encoder, image size, length of training (each stage's when they differ)."""
    if spec.config is None:
        return None
    config = load_config(spec.config, spec.overrides)
    t, image = config.train, config.image

    def length(epochs: int | None, steps: int | None) -> str:
        return f"{steps:,} iterations" if steps else f"{epochs} epoch{'' if epochs == 1 else 's'}"

    text = f"{spec.name}: `{spec.config}`, "
    if config.model.kind != "mlp":
        size = f"{image.size} px" + (f", centre crop {image.crop} px" if image.crop else "")
        text += f"{_encoder_text(config.model.encoder.model_dump())}, {size}, "
    text += length(t.epochs, t.max_steps)
    stages = [
        f"{name} {length(stage.epochs or t.epochs, stage.max_steps if stage.max_steps is not None else t.max_steps)}"
        for name, stage in t.stages.items()
    ]
    return text + (f" (stages: {', '.join(stages)})" if stages else "")


def epoch_overrides(epochs: int | None) -> dict[str, Any] | None:
    """What ``--epochs`` puts on every deep row: that many epochs in every stage, also where the row counts
    iterations (a smoke run or a short budget, not a schedule to compare)."""
    if not epochs:
        return None
    stages = {stage: {"epochs": epochs} for stage in sorted(all_stage_names())}
    return {"train": {"epochs": epochs, "max_steps": 0, "stages": stages}}


def compare_config(
    table: str, budget: Budget, data: DataOptions | None = None, overrides: dict[str, Any] | None = None
) -> CompareConfig:
    """The comparison that runs the rows of ``table`` at ``budget`` (``overrides`` on every deep row)."""
    rows = [m for row in TABLES[table].rows if (m := row.spec(budget, overrides)) is not None]
    return with_data_labels(CompareConfig(name=f"reproduce-{table}-{budget}", data=data or DataOptions(), methods=rows))


@dataclass(frozen=True)
class ReproduceOptions:
    """How a table is reproduced: its budget, ``epochs`` for every deep row (or SSL pre-training), a CSV of
    further ``published`` figures, how its cohort is read (``data``), and for table5 the ``runs`` to predict
    with instead of training its rows, the image sets' ``mode`` and a ``sets_file``."""

    budget: Budget = "cpu"
    epochs: int | None = None
    published: Path | None = None
    data: DataOptions | None = None
    runs: Sequence[str | Path] = ()
    mode: str = "auto"
    sets_file: Path | None = None
    set_predictions: Path | None = None  # table5: score these per-set predictions (e.g. the paper's own)
    frozen_encoders: bool = False  # aml-encoders: one attention head on frozen features instead of fine-tuning


def run_reproduce(
    table: str, cohort: Cohort, out: str | Path, options: ReproduceOptions | None = None, cv: CVSettings | None = None
) -> dict[str, Any]:
    """Run ``table`` on ``cohort``; write ``table.md``, ``table.csv``, ``reproduce.json`` and ``config.yaml``
    to ``out`` (the runs themselves in ``out/compare`` or ``out/encoders``) and return the JSON.

    ``epochs``: every deep row trains that many (or every SSL pre-training of ``aml-encoders``); table5 only:
    ``runs`` to predict with instead of training its rows, ``mode`` and ``sets_file`` for the image sets."""
    o, cv = options or ReproduceOptions(), cv or CVSettings()
    budget, epochs, published, data, runs, mode, sets_file = (
        o.budget, o.epochs, o.published, o.data, o.runs, o.mode, o.sets_file
    )  # fmt: skip
    folds, seed, cache_dir, progress, overwrite = cv.folds, cv.seed, cv.cache_dir, cv.progress, cv.overwrite
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose from {', '.join(TABLES)}")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    spec = TABLES[table]
    table5 = spec.kind == "repeatability"
    given = o.set_predictions
    if not table5 and (runs or mode != "auto" or sets_file is not None or given is not None):
        raise ValueError(
            f"--run, --mode, --sets-file and --set-predictions are for table5 (it predicts image sets); not {table}"
        )
    if given is not None and (runs or sets_file is not None or epochs):
        raise ValueError("--set-predictions scores predictions made elsewhere: no --run, --sets-file or --epochs")
    if runs and epochs:
        raise ValueError("--epochs trains the rows; with --run nothing is trained")
    acquisitions = None
    if table5 and given is None:
        from .repeatability import check_sets_mode, read_acquisitions

        acquisitions = read_acquisitions(sets_file) if sets_file is not None else None
        check_sets_mode(cohort, "given" if sets_file is not None else mode, acquisitions)
    figures = published_figures(table, published)
    overrides = epoch_overrides(epochs)
    start = time.perf_counter()
    out = Path(out)
    settings: dict[str, Any] = {"table": table, "budget": None if runs else budget, "seed": seed, "epochs": epochs}
    if not runs:
        settings["folds"] = folds
    if table5:
        settings.update(runs=[str(r) for r in runs], mode=mode, sets_file=str(sets_file) if sets_file else None)
        settings["set_predictions"] = str(given) if given else None
    if given is not None:
        runs = [given]  # nothing is trained: the rows come from the file
    fingerprint = run_fingerprint(settings, cohort.identity(), None)
    claim_output(out, "reproduce", fingerprint, overwrite)
    run = RunDir(out)
    run.write_info(cohort.root, cohort.layout, "reproduce", fingerprint)
    methods = compare_config(table, budget, data, overrides) if spec.kind != "encoders" else None
    if methods is not None and not runs:
        settings["methods"] = methods.model_dump(mode="json")["methods"]
    settings["published"] = str(published) if published else None
    notes = [_data_note(cohort)]
    if spec.kind == "encoders":
        ours, budget_notes, used = _encoders(cohort, out, o, folds, seed, cache_dir, progress, overwrite)
        settings.update(used)
        protocol = f"{folds}-fold CV, seed {seed}: mean ± std over the test folds"
    elif spec.kind == "compare":
        assert methods is not None
        budget_notes = [n for n in map(budget_note, methods.methods) if n]
        result = run_compare(cohort, methods, out / "compare", cv)
        row_of = {m.label: m.name for m in methods.methods}
        ours = {
            row_of.get(name, name): {"data": m["data"], "metrics": m["metrics"]}
            for name, m in result["methods"].items()
        }
        protocol = f"{folds}-fold CV, seed {seed}: mean ± std over the test folds"
    else:
        assert methods is not None
        budget_notes = [n for n in map(budget_note, methods.methods) if n] if not runs else []
        if given is not None:
            ours, note = _given_sets(given)
        else:
            ours, note = _repeatability(
                cohort, methods, out, runs, folds, seed, cache_dir, progress, overwrite, mode, acquisitions
            )
        ours = {_row_of_model(table, name): row for name, row in ours.items()}
        notes.append(note)
        if given is not None:
            trained = "the per-set predictions given"
        elif runs:
            trained = "the runs given"
        else:
            trained = f"{folds}-fold CV of each standalone model, seed {seed}"
        protocol = f"{trained}; one figure per row over the held-out patients' image sets"
    write_text(run.config, yaml.safe_dump(settings, sort_keys=False))
    if given is not None:
        notes.append(f"predictions: {given}, made elsewhere (no model run here)")
    elif runs:
        notes.append(f"models: the runs given ({', '.join(map(str, runs))}), trained as they were")
    else:
        notes.append(f"budget {budget}: " + ("; ".join(budget_notes) or "no deep model"))
    if budget == "cpu" and not runs and any("ResNet-K" in n for n in budget_notes):
        notes.append(
            "`--budget paper` trains the image models as the paper: ResNet-K with K=32 on 224 px cells, "
            "220,000 iterations"
        )
    not_run = {row.name: why for row in spec.rows if (why := row.not_run(budget)) and not runs}
    for why in dict.fromkeys(not_run.values()):
        names = [name for name, w in not_run.items() if w == why]
        notes.append(f"not run at budget {budget}: {', '.join(names)}: {why}")
    notes += _published_notes(figures, ours, spec.metrics)
    notes += [f"published: {n}" for n in paper_notes(table)]
    rows = _rows(ours, figures, spec.metrics, spec.rows, not_run)
    result_json = {
        "table": table,
        "title": spec.title,
        "paper": spec.paper,
        "budget": None if runs else budget,
        "split": "held-out patients' image sets" if table5 else "test",
        "protocol": protocol,
        "data": str(cohort.root),
        "rows": rows,
        "notes": notes,
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    write_text(out / "table.md", table_markdown(result_json, spec.metrics))
    write_text(out / "table.csv", table_csv(rows, spec.metrics))
    write_json(out / "reproduce.json", result_json)
    return result_json


def _data_note(cohort: Cohort) -> str:
    cells = sum(cohort[i].n_cells for i in cohort.ids)
    return (
        f"data: ours {cohort.root} ({len(cohort.ids)} patients, {cells:,} cells); published: the paper's own "
        "cohort, so figures differ with the patients as well as the method"
    )


def _repeatability(
    cohort: Cohort,
    methods: CompareConfig,
    out: Path,
    runs: Sequence[str | Path],
    folds: int,
    seed: int,
    cache_dir: str | Path | None,
    progress: bool,
    overwrite: bool,
    mode: str,
    acquisitions: dict[str, str] | None,
) -> tuple[dict[str, dict[str, Any]], str]:
    """Table 5: the given runs, else a CV of each standalone model on identical folds, then every held-out
    patient's image sets predicted by each."""
    from .repeatability import repeatability_plot, run_repeatability

    if not runs:
        run_compare(cohort, methods, out / "compare", CVSettings(folds, seed, None, cache_dir, progress, overwrite))
        runs = [method_folder(out / "compare", methods, m) for m in methods.methods]
    result = run_repeatability(
        list(runs),
        cohort,
        seed=seed,
        mode="given" if acquisitions is not None else mode,
        cache_dir=cache_dir,
        progress=progress,
        out=out,
        acquisitions=acquisitions,
        experts=False,
    )
    repeatability_plot(result, out / "repeatability.png")
    ours = {
        name: {
            "data": f"{m['patients']} patients",
            "metrics": {k: {"mean": m[k], "std": None} for k in REPEATABILITY},
        }
        for name, m in result["models"].items()
    }
    return ours, f"image sets: {result['image_sets']}; patients: {result['split']}"


def _given_sets(path: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """Table 5's figures of per-set predictions made elsewhere (``read_set_predictions``'s CSV)."""
    from .repeatability import read_set_predictions, summarise_sets

    rows, classes = read_set_predictions(path)
    result = summarise_sets(rows, classes)
    ours = {
        name: {"data": f"{m['patients']} patients", "metrics": {k: {"mean": m[k], "std": None} for k in REPEATABILITY}}
        for name, m in result["models"].items()
    }
    ties = {name: m["majority_ties"] for name, m in result["models"].items() if m["majority_ties"]}
    tie_note = f"; majority ties (counted wrong): {ties}" if ties else "; no majority tie"
    return ours, f"image sets: those of {path}{tie_note}"


def _encoders(
    cohort: Cohort,
    out: Path,
    options: ReproduceOptions,
    folds: int,
    seed: int,
    cache_dir: str | Path | None,
    progress: bool,
    overwrite: bool,
) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    """The second paper's comparison: each encoder fine-tuned inside the MIL model, as the paper does (or
    frozen under one attention head); with ``epochs``, the SSL pre-trainings and the supervised models
    train that many epochs."""
    budget, epochs, fine_tune = options.budget, options.epochs, not options.frozen_encoders
    from ..training.config.head import load_head_config
    from ..training.config.ssl import load_ssl_config
    from .ssl_cv import applicable_kinds, run_encoder_comparison

    preset = "cpu-ssl" if budget == "cpu" else "ssl-simclr-r18"
    ssl = load_ssl_config(preset, {"seed": seed, **({"epochs": epochs} if epochs else {})})
    supervised = "cpu-attention" if budget == "cpu" else "cnn-attention-k32"
    if epochs:  # a config file, so that every fold's supervised encoder trains as briefly
        shortened = out / "supervised.yaml"
        write_text(shortened, yaml.safe_dump({"base": supervised, "train": {"epochs": epochs, "max_steps": 0}}))
        supervised = str(shortened)
    kinds = applicable_kinds(cohort, ssl)
    if fine_tune:  # fine-tuned from a random start, the patient-label encoder is the MIL model itself
        kinds = [kind for kind in kinds if kind != "supervised"]
    head = load_head_config("attention")
    result = run_encoder_comparison(
        cohort, kinds, ssl, head, out / "encoders", folds, seed, cache_dir, supervised, progress, overwrite, fine_tune
    )
    names = FINETUNED_ROWS if fine_tune else ENCODER_ROWS
    ours = {
        names.get(kind, kind): {"data": "imgs", "metrics": {m: r[m] for m in ENCODERS}}
        for kind, r in result["encoders"].items()
    }
    size = f"{ssl.image.size} px" + (f", centre crop {ssl.image.crop} px" if ssl.image.crop else "")
    note = (
        f"encoders {_encoder_text(ssl.encoder.model_dump())}, {size}; SSL `{preset}` {ssl.epochs} epochs per fold"
        + (
            f"; each encoder fine-tuned end to end inside the MIL model of `{supervised}`, as the paper does"
            if fine_tune
            else f"; supervised encoder from `{supervised}`; frozen encoders under one attention MIL head"
        )
    )
    used = {
        "encoders": kinds,
        "ssl": ssl.model_dump(mode="json"),
        "supervised": supervised,
        "head": "attention",
        "fine_tune": fine_tune,
    }
    notes = [note]
    if "single-cell" not in kinds:
        notes.append(
            f"not run: {ENCODER_ROWS['single-cell']}: the cohort has no cell types and no `cell_labels` data set "
            "was given (e.g. `--set cell_labels=../shared/data/blood-cells-dev`)"
        )
    if not fine_tune:
        notes.append(
            "the paper fine-tunes each encoder inside its MIL model; here (--frozen-encoders) the encoders are "
            "frozen and one attention head learns on their features"
        )
    return ours, notes, used


def _published_notes(figures: list[Published], ours: Mapping[str, Any], metrics: Sequence[str]) -> list[str]:
    if not figures:
        return [
            "published: the paper's text here has no figure for this table (add yours with --published FIGURES.csv)"
        ]
    return [f"published figures from: {s}" for s in sorted({f.source for f in figures})]


def _rows(
    ours: Mapping[str, Mapping[str, Any]],
    figures: list[Published],
    metrics: Sequence[str],
    table_rows: Sequence[Row] = (),
    not_run: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every row in the paper's order (ours or why not, beside the published figures), then any other row."""
    by_row = {f.row: f for f in figures}
    data = {row.name: row.data for row in table_rows}
    names = [*(row.name for row in table_rows), *(n for n in ours if n not in data), *by_row]
    rows: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        found = by_row.get(name)
        mine = ours.get(name)
        rows[name] = {
            "data": data.get(name) or (mine["data"] if mine else ""),  # the paper's wording for its rows
            "ours": {m: mine["metrics"].get(m) for m in metrics} if mine else {},
            "published": {m: found.metrics.get(m) for m in metrics} if found else {},
            "source": found.source if found else None,
        }
        if mine is None and (not_run or {}).get(name):
            rows[name]["not_run"] = (not_run or {})[name]
    return rows
