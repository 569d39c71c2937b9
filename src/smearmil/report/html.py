"""``smearmil report``: a self-contained ``report.html`` (images embedded, no server, no network)
and ``report.md`` (images beside it in ``report_files/``) for a train, cv or compare folder."""

from __future__ import annotations

import base64
import csv
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import build_cache
from ..data.inspect import summarise
from ..data.options import DataOptions
from ..data.validation import load_cohort
from ..evaluation.metrics import displayed_metrics, folds_note
from ..evaluation.plots import confusion_plot
from ..evaluation.repeatability import repeatability_plot
from ..explain.gallery import explain_patient, gallery_png
from ..training.run_dir import RunDir
from ..utils.atomic import write_text
from ..utils.outputs import digest
from ..utils.paths import slug
from ..utils.plotting import plt, save_figure
from ..utils.scoring import METRICS

LABELS = {
    "balanced_accuracy": "balanced accuracy",
    "roc_auc": "ROC-AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
}
CHECK_SCRIPT = """
<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
  document.body.setAttribute('data-errors', String(window.__errors.length));
});
</script>"""
STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.4em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}.note{color:#666;font-size:.85em}
</style>"""


@dataclass
class Section:
    title: str
    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)


class Report:
    def __init__(self, out: Path):
        self.out = out
        self.files = out / "report_files"
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        self.sections.append(Section(title))
        return self.sections[-1]

    def text(self, s: Section, text: str) -> None:
        s.html.append(f"<p>{html.escape(text)}</p>")
        s.md.append(text + "\n")

    def table(self, s: Section, header: list[str], rows: list[list[str]]) -> None:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        s.html.append(f"<table><tr>{cells}</tr>{body}</table>")
        s.md.append(
            "| "
            + " | ".join(header)
            + " |\n|"
            + "---|" * len(header)
            + "\n"
            + "".join("| " + " | ".join(r) + " |\n" for r in rows)
        )

    def image(self, s: Section, png: Path, caption: str) -> None:
        data = base64.b64encode(png.read_bytes()).decode()
        s.html.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption class=note>{html.escape(caption)}</figcaption></figure>"
        )
        self.files.mkdir(parents=True, exist_ok=True)
        target = self.files / png.name
        if png.resolve() != target.resolve():
            target.write_bytes(png.read_bytes())
        s.md.append(f"![{caption}](report_files/{png.name})\n")

    def code(self, s: Section, text: str) -> None:
        s.html.append(f"<pre>{html.escape(text)}</pre>")
        s.md.append("```yaml\n" + text + "\n```\n")

    def write(self, title: str) -> tuple[Path, Path]:
        body = "".join(f"<h2>{html.escape(s.title)}</h2>{''.join(s.html)}" for s in self.sections)
        page = (
            f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"{STYLE}{CHECK_SCRIPT}</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )
        write_text(self.out / "report.html", page)
        md = f"# {title}\n\n" + "".join(f"## {s.title}\n\n" + "\n".join(s.md) + "\n" for s in self.sections)
        write_text(self.out / "report.md", md)
        return self.out / "report.html", self.out / "report.md"


def _fmt(cell: Any) -> str:
    if isinstance(cell, dict):
        if cell.get("mean") is None:
            return "-"
        return f"{cell['mean']:.3f} ± {cell.get('std') or 0:.3f}{folds_note(cell)}"
    return "-" if cell is None else f"{cell:.3f}"


def _training_curves(run: Path, png: Path) -> Path | None:
    logs = sorted(run.glob("**/logs/metrics.csv"))
    if not logs:
        return None
    stages = sorted({p.parent.parent.name for p in logs})
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for log in (p for p in logs if p.parent.parent.name == stage):
            rows = list(csv.DictReader(log.open()))
            for key, style in (("train/loss", "-"), ("val/loss", "--")):
                points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
                if points:
                    xs, ys = zip(*points)
                    fold = log.parent.parent.parent.name if log.parent.parent.parent != run else ""
                    ax.plot(xs, ys, style, lw=1, label=f"{fold} {key.split('/')[0]}".strip())
        ax.set(title=f"stage {stage}", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=6)
    return save_figure(fig, png)


def _predictions(run: Path) -> list[dict[str, str]]:
    path = RunDir(run).predictions
    return list(csv.DictReader(path.open())) if path.is_file() else []


def build_report(
    run: str | Path,
    data: str | Path | None = None,
    galleries: int = 3,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    comparison: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``report.html`` and ``report.md`` into ``run``; returns the HTML path.

    ``comparison`` adds a table of other methods' CV summaries run on the same folds."""
    folder = RunDir(run)
    run = folder.path
    report = Report(run)
    work = run / "report_files"
    work.mkdir(exist_ok=True)
    summary = folder.read_json(folder.summary)
    metrics = folder.read_json(folder.metrics)
    data = Path(data) if data else folder.data_path()
    cohort = None
    if data is not None and data.exists():
        cohort = load_cohort(data, DataOptions(check_images=False), progress=False)
        s = report.section("Data")
        info = summarise(cohort)
        report.table(
            s,
            ["", "value"],
            [
                ["data set", str(data)],
                ["layout", info.layout],
                ["patients", str(info.patients)],
                ["cells", str(info.cells)],
            ]
            + [[f"class {k}", str(v)] for k, v in info.classes.items()],
        )
    s = report.section("Results (test patients)")
    if summary and "methods" in summary:  # a comparison
        report.table(
            s,
            ["method", "data", *(LABELS[m] for m in METRICS)],
            [[name, m["data"], *(_fmt(m["metrics"][k]) for k in METRICS)] for name, m in summary["methods"].items()],
        )
        report.text(s, f"{summary['folds']}-fold cross-validation by patient; mean ± std over the test folds.")
    elif summary:
        report.table(
            s,
            ["", *(LABELS[m] for m in METRICS)],
            [
                ["test folds, mean ± std", *(_fmt(displayed_metrics(summary)[k]) for k in METRICS)],
                ["pooled test predictions", *(_fmt(summary["pooled"][k]) for k in METRICS)],
            ],
        )
        report.text(
            s,
            f"{len(summary['folds'])}-fold cross-validation by patient; thresholds: {', '.join(summary['threshold'])}.",
        )
    elif metrics:
        report.table(
            s,
            ["split", *(LABELS[m] for m in METRICS)],
            [
                [f"{k} ({v['n_patients']} patients)", *(_fmt(v["metrics"].get(m)) for m in METRICS)]
                for k, v in metrics["splits"].items()
            ],
        )
    if (run / "roc.png").is_file():
        report.image(s, run / "roc.png", "ROC curves, pooled test predictions")
    if summary and summary.get("confusion_matrix"):
        report.image(
            s,
            confusion_plot(summary["confusion_matrix"], summary["class_names"], work / "confusion.png"),
            "confusion matrix, pooled test predictions",
        )
    if comparison:
        s = report.section("Comparison on the same folds (test patients)")
        report.table(
            s,
            ["method", *(LABELS[m] for m in METRICS)],
            [[name, *(_fmt(displayed_metrics(c)[k]) for k in METRICS)] for name, c in comparison.items()],
        )
    curves = _training_curves(run, work / "training_curves.png")
    if curves:
        report.image(report.section("Training curves"), curves, "loss per epoch (solid: train, dashed: validation)")
    if (rep := folder.read_json(folder.repeatability)) is not None:
        s = report.section("Repeatability")
        report.table(
            s,
            ["model", "patients", "intra-patient disagreement", "majority-vote accuracy"],
            [
                [name, str(m["patients"]), f"{100 * m['disagreement_rate']:.1f}%", f"{m['majority_vote_accuracy']:.3f}"]
                for name, m in rep["models"].items()
            ],
        )
        report.text(
            s,
            f"{rep['sets']} image sets per patient"
            + (f" of {100 * rep['fraction']:.0f}% of its cells" if rep.get("fraction") else "")
            + "; each patient predicted by a model that did not train on it.",
        )
        report.image(s, repeatability_plot(rep, work / "repeatability.png"), "P(true class) across image sets")
    if cohort is not None and galleries and folder.splits.is_file():
        _galleries(report, run, cohort, galleries, cache_dir, progress)
    if folder.config.is_file():
        report.code(report.section("Resolved configuration"), folder.config.read_text())
    html_path, _ = report.write(f"smearmil report: {run.name}")
    return html_path


def _galleries(report: Report, run: Path, cohort: Any, n: int, cache_dir: str | Path | None, progress: bool) -> None:
    try:
        models = {f.fold: f for f in RunDir(run).fold_models()}
    except FileNotFoundError:
        return
    rows = [r for r in _predictions(run) if r["patient"] in cohort]
    rows.sort(key=lambda r: r["label"] == r["prediction"])  # misclassified first
    image_models = [f for f in models.values() if f.model.uses_images]
    if not rows or not image_models:
        return
    s = report.section("Cells that drive the decision")
    report.text(
        s,
        "Most and least contributing cells of a few test patients (misclassified first), each above "
        "its guided-backpropagation saliency.",
    )
    cache = build_cache(cohort, image_models[0].model.config.image.preprocessing, cache_dir, progress=progress)
    for r in rows[:n]:
        fold = models.get(r["fold"])
        if fold is None or not fold.model.uses_images:
            continue
        trained = fold.model
        attributes = (
            trained.encoder.transform(cohort, [r["patient"]])[0] if trained.encoder.names else np.zeros(0, np.float32)
        )
        explanation = explain_patient(
            trained, r["patient"], cache.read_bag(r["patient"]), cache.cell_ids(r["patient"]), attributes
        )
        name = f"gallery_{slug(r['patient'])}_{digest(r['patient'])[:6]}.png"  # a patient id is not a file name
        png = gallery_png(
            explanation,
            report.files / name,
            title=f"{r['patient']}: true {r['label']}, predicted {r['prediction']}",
        )
        report.image(s, png, f"patient {r['patient']} (true {r['label']}, predicted {r['prediction']})")
