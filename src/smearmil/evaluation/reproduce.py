"""``smearmil reproduce``: one of the papers' tables, its rows run on identical folds, the published figures
beside ours and a note on what differs (data, budget).

Tables of Sahasrabudhe et al. 2021: ``table2`` (the deep MIL models), ``table3`` (classifiers on the clinical
attributes), ``table4`` (hand-crafted features with classical MIL, attention MIL), ``table5`` (repeatability
over image sets); of the second paper (self-supervised MIL for AML subtypes): ``aml-encoders`` (encoders
through the same attention MIL head). ``budget="paper"`` runs the faithful presets (a GPU's work);
``budget="cpu"`` the CPU preset of every deep row (smaller K and images, fewer steps), and says so."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data.cohort import Cohort
from ..data.options import DataOptions
from ..training.config import PAPER, load_config
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.config_files import merge_dicts
from ..utils.outputs import claim_output, run_fingerprint
from .compare import CompareConfig, MethodSpec, method_folder, run_compare, with_data_labels

Budget = Literal["cpu", "paper"]
BUDGETS: tuple[Budget, ...] = ("cpu", "paper")
SECOND_PAPER = (
    "Kazeminia et al. 2024, Self-supervised multiple instance learning for acute myeloid leukemia "
    "classification (arXiv 2403.05379)"
)
BINARY = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy")
REPEATABILITY = ("disagreement_rate", "majority_vote_accuracy")
ENCODERS = ("macro_f1", "balanced_accuracy")
HEADERS = {
    "balanced_accuracy": "bal. acc",
    "roc_auc": "ROC-AUC",
    "sensitivity": "sens",
    "specificity": "spec",
    "accuracy": "acc",
    "macro_f1": "macro-F1",
    "disagreement_rate": "intra-patient disagreement",
    "majority_vote_accuracy": "majority-vote accuracy",
}


@dataclass(frozen=True)
class Row:
    """One row of a table: a method at the paper's budget and, when it differs, at the CPU budget."""

    name: str
    paper: dict[str, Any]  # MethodSpec fields (without the name)
    cpu: dict[str, Any] | None = None

    def spec(self, budget: Budget, overrides: dict[str, Any] | None = None) -> MethodSpec:
        """The method at ``budget``; ``overrides`` go on top of a deep row's config."""
        fields = dict(self.cpu if budget == "cpu" and self.cpu is not None else self.paper)
        if overrides and "config" in fields:
            fields["overrides"] = merge_dicts(fields.get("overrides", {}), overrides)
        return MethodSpec(name=self.name, **fields)


def _deep(name: str, paper: str, cpu: str, overrides: dict[str, Any] | None = None) -> Row:
    return Row(name, {"config": paper}, {"config": cpu, "overrides": overrides or {}})


def _base(name: str, baseline: str, data: str | None = None) -> Row:
    return Row(name, {"baseline": baseline, **({"data": data} if data else {})})


MLP = _deep("MLP", "mlp", "cpu-mlp")
CNN = _deep("CNN (mean)", "cnn-mean-k32", "cpu-cnn")
AVG = _deep("AVG", "avg-mean-k32", "cpu-avg")
MOE = _deep("MOE (P2)", "moe-p2-k32", "cpu-moe-cnn")
ATTENTION = _deep("attention MIL", "cnn-attention-k32", "cpu-attention")


@dataclass(frozen=True)
class TableSpec:
    paper: str
    title: str
    kind: Literal["compare", "repeatability", "encoders"]
    rows: tuple[Row, ...] = ()
    metrics: tuple[str, ...] = BINARY
    notes: tuple[str, ...] = field(default_factory=tuple)


TABLES: dict[str, TableSpec] = {
    "table2": TableSpec(
        PAPER,
        "Table 2: the deep MIL models, images (CNN with each pooling), attributes (MLP) and both (AVG, MOE)",
        "compare",
        (
            MLP,
            _deep("CNN (max)", "cnn-max-k32", "cpu-cnn", {"model": {"pooling": {"name": "max"}}}),
            CNN,
            _deep("CNN (LSE)", "cnn-lse-k32", "cpu-cnn", {"model": {"pooling": {"name": "lse"}}}),
            _deep("CNN (attention)", "cnn-attention-k32", "cpu-attention"),
            AVG,
            _deep("MOE (P1)", "moe-p1-k32", "cpu-moe-cnn", {"model": {"paradigm": "P1"}}),
            MOE,
            _deep("MOE (P3)", "moe-p3-k32", "cpu-moe-cnn", {"model": {"paradigm": "P3"}}),
        ),
    ),
    "table3": TableSpec(
        PAPER,
        "Table 3: classifiers on the clinical attributes (age, lymphocyte count), beside the mixture of experts",
        "compare",
        (
            _base("paper MLP (2 sigmoid units)", "clinical/paper-mlp"),
            _base("SVM", "clinical/svm"),
            _base("decision tree", "clinical/tree"),
            _base("naive Bayes", "clinical/gnb"),
            _base("AdaBoost", "clinical/adaboost"),
            _base("gradient boosting", "clinical/gboost"),
            _base("random forest", "clinical/rf"),
            _base("MLP (sklearn)", "clinical/mlp"),
            _base("logistic regression", "clinical/logreg"),
            MLP,
            MOE,
        ),
    ),
    "table4": TableSpec(
        PAPER,
        "Table 4: hand-crafted features (94 per cell) with classical MIL, and attention MIL, beside the mixture",
        "compare",
        (
            *(
                _base(name, f"mil/{method}", data)
                for name, method in (
                    ("MI-SVM", "MISVM"),
                    ("mi-SVM", "miSVM"),
                    ("MILES", "MILES"),
                    ("SPEC-MIL", "specialising"),
                    ("EM-DD", "EMDD"),
                )
                for data in ("imgs", "imgs+attrs")
            ),
            ATTENTION,
            MOE,
        ),
    ),
    "table5": TableSpec(
        PAPER,
        "Table 5: repeatability, each patient's image sets predicted by the standalone CNN, MLP, AVG and MOE",
        "repeatability",
        (CNN, MLP, AVG, MOE),
        REPEATABILITY,
    ),
    "aml-encoders": TableSpec(
        SECOND_PAPER,
        "Encoder comparison: random, supervised and self-supervised encoders through one attention MIL head",
        "encoders",
        metrics=ENCODERS,
    ),
}


@dataclass(frozen=True)
class Published:
    """A figure set of one row: ``{metric: value}`` and where it was read."""

    row: str
    metrics: dict[str, float]
    source: str


def published_figures(table: str, extra: Path | None = None) -> list[Published]:
    """The package's published figures for ``table`` (``published.yaml``), then a user's CSV (columns table,
    row, metric, value, source) on top."""
    data = yaml.safe_load(resources.files(__package__).joinpath("published.yaml").read_text(encoding="utf-8"))
    found: dict[str, Published] = {}
    for entry in data["figures"]:
        if table in entry["tables"]:
            source = data["sources"][entry["source"]]
            found[entry["row"]] = Published(entry["row"], dict(entry["metrics"]), source)
    if extra is not None:
        for n, record in enumerate(_read_figures(extra), start=2):
            if record["table"] != table:
                continue
            metric = record["metric"]
            if metric not in HEADERS:
                raise ValueError(f"{extra}, row {n}: unknown metric {metric!r}; use one of {', '.join(HEADERS)}")
            try:
                value = float(record["value"])
            except ValueError:
                raise ValueError(f"{extra}, row {n}: value {record['value']!r} is not a number") from None
            old = found.get(record["row"])
            metrics = {**(old.metrics if old else {}), metric: value}
            found[record["row"]] = Published(record["row"], metrics, record.get("source") or str(extra))
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


def budget_note(spec: MethodSpec) -> str | None:
    """What a deep row trains: encoder width, image size, length of training."""
    if spec.config is None:
        return None
    config = load_config(spec.config, spec.overrides)
    t, image = config.train, config.image
    length = f"{t.max_steps:,} iterations" if t.max_steps else f"{t.epochs} epochs"
    if config.model.kind == "mlp":
        return f"{spec.name}: `{spec.config}`, {length}"
    encoder = config.model.encoder.model_dump()
    size = f"{image.size} px" + (f", centre crop {image.crop} px" if image.crop else "")
    return f"{spec.name}: `{spec.config}`, K={encoder.get('k')}, {size}, {length}"


def compare_config(
    table: str, budget: Budget, data: DataOptions | None = None, overrides: dict[str, Any] | None = None
) -> CompareConfig:
    """The comparison that runs the rows of ``table`` at ``budget`` (``overrides`` on every deep row)."""
    rows = [row.spec(budget, overrides) for row in TABLES[table].rows]
    return with_data_labels(CompareConfig(name=f"reproduce-{table}-{budget}", data=data or DataOptions(), methods=rows))


def run_reproduce(
    table: str,
    cohort: Cohort,
    out: str | Path,
    budget: Budget = "cpu",
    folds: int = 5,
    seed: int = 0,
    runs: Sequence[str | Path] = (),
    published: Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    mode: str = "auto",
    data: DataOptions | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Run ``table`` on ``cohort`` (``epochs``: every deep row's, or every SSL pre-training's); write
    ``table.md``, ``table.csv`` and ``reproduce.json`` to ``out`` (the runs themselves in ``out/compare`` or
    ``out/encoders``) and return the JSON."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose from {', '.join(TABLES)}")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    spec = TABLES[table]
    overrides = {"train": {"epochs": epochs}} if epochs else None
    if runs and spec.kind != "repeatability":
        raise ValueError(f"runs are given to table5 only (it predicts with them); {table} trains its own rows")
    figures = published_figures(table, published)
    start = time.perf_counter()
    out = Path(out)
    settings = {
        "table": table,
        "budget": budget,
        "folds": folds,
        "seed": seed,
        "runs": [str(r) for r in runs],
        "epochs": epochs,
    }
    fingerprint = run_fingerprint(settings, cohort.identity(), None)
    claim_output(out, "reproduce", fingerprint, overwrite)
    run = RunDir(out)
    run.write_info(cohort.root, cohort.layout, "reproduce", fingerprint)
    if spec.kind != "encoders":
        settings["methods"] = compare_config(table, budget, data, overrides).model_dump(mode="json")["methods"]
    write_text(run.config, yaml.safe_dump(settings, sort_keys=False))
    notes = [_data_note(cohort)]
    if spec.kind == "encoders":
        ours, budget_notes = _encoders(
            cohort, out / "encoders", budget, folds, seed, cache_dir, progress, overwrite, epochs
        )
    else:
        methods = compare_config(table, budget, data, overrides)
        budget_notes = [n for n in map(budget_note, methods.methods) if n]
        if spec.kind == "compare":
            result = run_compare(cohort, methods, out / "compare", folds, seed, cache_dir, progress, overwrite)
            ours = {name: {"data": m["data"], "metrics": m["metrics"]} for name, m in result["methods"].items()}
        else:
            ours, note = _repeatability(cohort, methods, out, runs, folds, seed, cache_dir, progress, overwrite, mode)
            notes.append(note)
            if runs:
                budget_notes = [f"the runs given: {', '.join(map(str, runs))}"]
    protocol = "" if spec.kind == "repeatability" and runs else f"{folds}-fold CV, seed {seed}, test folds"
    notes.append(f"budget {budget}: " + ("; ".join(budget_notes) or "no deep model"))
    if budget == "cpu" and spec.kind != "encoders" and not runs:
        notes.append(
            "the paper's deep rows train ResNet-K with K=32 on 224 px cells for 220,000 iterations (`--budget paper`)"
        )
    notes += _published_notes(figures, ours)
    rows = _rows(ours, figures, spec.metrics)
    result_json = {
        "table": table,
        "title": spec.title,
        "paper": spec.paper,
        "budget": budget,
        "split": "test" if spec.kind != "repeatability" else "held-out patients' image sets",
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
) -> tuple[dict[str, dict[str, Any]], str]:
    """Table 5: the given runs, else a CV of each standalone model on identical folds, then every held-out
    patient's image sets predicted by each."""
    from .repeatability import repeatability_plot, run_repeatability

    if not runs:
        run_compare(cohort, methods, out / "compare", folds, seed, cache_dir, progress, overwrite)
        runs = [method_folder(out / "compare", m) for m in methods.methods]
    result = run_repeatability(
        list(runs), cohort, seed=seed, mode=mode, cache_dir=cache_dir, progress=progress, out=out
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


def _encoders(
    cohort: Cohort,
    out: Path,
    budget: Budget,
    folds: int,
    seed: int,
    cache_dir: str | Path | None,
    progress: bool,
    overwrite: bool,
    epochs: int | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    from ..training.feature_mil import load_head_config
    from ..training.ssl.config import load_ssl_config
    from .ssl_cv import applicable_kinds, run_encoder_comparison

    ssl_overrides: dict[str, Any] = {"seed": seed, **({"epochs": epochs} if epochs else {})}
    ssl = load_ssl_config("cpu-ssl" if budget == "cpu" else "ssl-simclr-r18", ssl_overrides)
    supervised = "cpu-attention" if budget == "cpu" else "cnn-attention-k32"
    kinds = applicable_kinds(cohort, ssl)
    result = run_encoder_comparison(
        cohort, kinds, ssl, load_head_config("attention"), out, folds, seed, cache_dir, supervised, progress, overwrite
    )
    ours = {kind: {"data": "imgs", "metrics": {m: r[m] for m in ENCODERS}} for kind, r in result["encoders"].items()}
    encoder = ssl.encoder.model_dump()
    size = f"{ssl.image.size} px" + (f", centre crop {ssl.image.crop} px" if ssl.image.crop else "")
    return ours, [f"encoders {encoder.get('name')} K={encoder.get('k')}, {size}, {ssl.epochs} SSL epochs"]


def _published_notes(figures: list[Published], ours: Mapping[str, Any]) -> list[str]:
    if not figures:
        return ["published: no figure of this table is stored (add yours with --published FIGURES.csv)"]
    sources = sorted({f.source for f in figures})
    only = [f.row for f in figures if f.row not in ours]
    lines = [f"published figures from: {s}" for s in sources]
    if only:
        lines.append(f"published-only rows (nothing of ours to set beside them): {'; '.join(only)}")
    lines.append("rows without a published figure: the paper's table was not available when this was built")
    return lines


def _rows(
    ours: Mapping[str, Mapping[str, Any]], figures: list[Published], metrics: Sequence[str]
) -> dict[str, dict[str, Any]]:
    by_row = {f.row: f for f in figures}
    rows: dict[str, dict[str, Any]] = {}
    for name, row in ours.items():
        found = by_row.get(name)
        rows[name] = {
            "data": row["data"],
            "ours": {m: row["metrics"].get(m) for m in metrics},
            "published": {m: found.metrics.get(m) for m in metrics} if found else {},
            "source": found.source if found else None,
        }
    for f in figures:
        if f.row not in rows:
            rows[f.row] = {"data": "", "ours": {}, "published": dict(f.metrics), "source": f.source}
    return rows


def _cell(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("mean") is None:
        return "-"
    std = value.get("std")
    return f"{value['mean']:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def table_markdown(result: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """Ours and published side by side for every metric, then what differs."""
    head = "| row | data | " + " | ".join(f"{HEADERS[m]}: ours | published" for m in metrics) + " |"
    rule = "|---|---|" + "---|---|" * len(metrics)
    lines = [
        f"**{result['title']}**",
        "",
        f"From {result['paper']}. Ours: {result['protocol'] or 'the runs given'} on {result['data']}, "
        f"budget `{result['budget']}`; mean ± std over the test folds. Published: the paper's figure where one "
        "is stored, else -.",
        "",
        head,
        rule,
    ]
    for name, row in result["rows"].items():
        cells = [f"{_cell(row['ours'].get(m))} | {_published(row['published'].get(m))}" for m in metrics]
        lines.append(f"| {name} | {row['data']} | " + " | ".join(cells) + " |")
    lines += ["", "**What differs**", "", *(f"- {n}" for n in result["notes"])]
    return "\n".join(lines) + "\n"


def _published(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_csv(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["row", "data", *(f"{m}_{k}" for m in metrics for k in ("ours_mean", "ours_std", "published")), "source"]
    )
    for name, row in rows.items():
        cells: list[str] = []
        for m in metrics:
            mine = row["ours"].get(m) or {}
            cells += [_num(mine.get("mean")), _num(mine.get("std")), _num(row["published"].get(m))]
        writer.writerow([name, row["data"], *cells, row["source"] or ""])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"
