"""Sections of a report besides results and patients: data, comparison, training curves, repeatability,
attention by cell type and UMAPs, galleries, resolved configuration and provenance."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..data.inspect import summarise
from ..data.problems import DataError
from ..data.validation import load_cohort
from ..evaluation.metrics import displayed_metrics
from ..evaluation.plots import cell_type_attention_plot
from ..protocols.repeatability import REPEATABILITY_COLOURS, repeatability_plot
from ..training.config.experts import ExpertSpec
from ..training.run_dir import RunDir
from ..utils.plotting import plt, save_figure
from ..utils.scoring import METRICS
from .folder import OutputFolder, flatten
from .galleries import Gallery
from .page import Report
from .patients import gallery_anchor
from .results import fmt, metric_labels


def data_section(report: Report, folder: OutputFolder, data: Path | None) -> Any:
    """The data set the run read (patients, cells, classes); returns the loaded cohort, or None."""
    if folder.kind == "predict":
        s = report.section("Data")
        cells = folder.path / "cells.csv"
        rows = [["patients predicted", str(len(folder.methods[0].rows) if folder.methods else 0)]]
        if data is not None:
            rows.insert(0, ["data", str(data)])
        if cells.is_file():
            with cells.open(newline="", encoding="utf-8") as handle:
                rows.append(["cells listed in cells.csv", str(sum(1 for _ in csv.DictReader(handle)))])
        report.table(s, ["", "value"], rows)
        return None
    if data is None or not data.exists():
        if data is not None:
            report.text(report.section("Data"), f"The data set {data} is no longer there.", note=True)
        return None
    s = report.section("Data")
    try:
        cohort = load_cohort(data, folder.data_options(), progress=False)
    except (DataError, ValueError, OSError) as error:
        report.text(s, f"{data} could not be read again: {error}", note=True)
        return None
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
        + [[f"class {k}", f"{v} patients"] for k, v in info.classes.items()],
    )
    return cohort


def comparison_section(report: Report, comparison: dict[str, dict[str, Any]], class_names: list[str]) -> None:
    s = report.section("Comparison on the same folds (test patients)")
    labels = metric_labels(class_names)
    report.table(
        s,
        ["method", *(labels[m] for m in METRICS)],
        [[name, *(fmt(displayed_metrics(c)[k]) for k in METRICS)] for name, c in comparison.items()],
    )


def _training_curves(run: Path, png: Path) -> Path | None:
    """Loss per epoch, one panel per training stage: one colour per fold, solid train, dashed validation."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    logs = sorted(run.glob("**/logs/metrics.csv"))
    if not logs:
        return None
    stages = sorted({p.parent.parent.name for p in logs})
    folds = sorted({p.parent.parent.parent.name if p.parent.parent.parent != run else "" for p in logs})
    colour = {fold: f"C{i % 10}" for i, fold in enumerate(folds)}
    fig, axes = plt.subplots(
        1, len(stages), figsize=(3.6 * len(stages) + 1.6, 3.2), squeeze=False, layout="constrained"
    )
    for ax, stage in zip(axes[0], stages):
        for log in (p for p in logs if p.parent.parent.name == stage):
            with log.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            fold = log.parent.parent.parent.name if log.parent.parent.parent != run else ""
            for key, style in (("train/loss", "-"), ("val/loss", "--")):
                points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, lw=1, marker="o", markersize=2, color=colour[fold])
        ax.set_title(f"stage {stage}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        low, high = ax.get_xlim()
        if high - low < 1:  # one epoch: whole-number ticks around it
            ax.set_xlim(round((low + high) / 2) - 1, round((low + high) / 2) + 1)
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("loss")
    handles = [Line2D([], [], color=colour[f], label=f or "model") for f in folds]
    handles += [Line2D([], [], color="grey", label="train"), Line2D([], [], color="grey", ls="--", label="validation")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return save_figure(fig, png)


def training_section(report: Report, folder: OutputFolder, work: Path) -> None:
    curves = _training_curves(folder.path, work / "training_curves.png")
    if curves:
        report.image(report.section("Training curves"), curves, "loss per epoch (solid: train, dashed: validation)")


def repeatability_section(report: Report, folder: OutputFolder, work: Path) -> None:
    rep = folder.json("repeatability.json")
    if rep is None:
        return
    s = report.section("Repeatability")
    report.table(
        s,
        ["model", "patients", "sets disagreeing (mean)", "sets right", "majority right", "any disagreement"],
        [
            [
                name,
                str(m["patients"]),
                f"{100 * m.get('mean_set_disagreement', m['disagreement_rate']):.0f}%",
                f"{100 * m['set_accuracy']:.0f}%" if "set_accuracy" in m else "-",
                f"{m['majority_vote_accuracy']:.3f}",
                f"{100 * m['disagreement_rate']:.0f}%",
            ]
            for name, m in rep["models"].items()
        ],
    )
    kind = rep.get("image_sets") or ("given acquisitions" if rep["sets"] == "given" else "random subsets")
    report.text(
        s,
        (f"{rep['sets']} " if rep["sets"] != "given" else "")
        + f"image sets per patient: {kind}"
        + (f", each {100 * rep['fraction']:.0f}% of its cells" if rep.get("fraction") else "")
        + "; each patient predicted by a model that did not train on it.",
    )
    colours = "; ".join(f"{c.removeprefix('tab:')}: {label}" for c, label in REPEATABILITY_COLOURS.items())
    report.image(s, repeatability_plot(rep, work / "repeatability.png"), f"P(true class) across image sets ({colours})")


def attention_section(report: Report, folder: OutputFolder, work: Path) -> None:
    """Attention by cell type and UMAPs of the test cells, where a head on cached features wrote them."""
    by_type = (folder.summary or {}).get("attention_by_cell_type")
    pngs = [
        ("umap_cell_type.png", "UMAP of the test cells' features, coloured by cell type"),
        ("umap_attention.png", "UMAP of the test cells' features, coloured by attention (log10 relative attention)"),
    ]
    present = [(folder.path / name, caption) for name, caption in pngs if (folder.path / name).is_file()]
    caption = "mean relative attention per cell type and true class (1 = uniform; numbers: cells)"
    if by_type:
        names = folder.class_names or list(by_type)
        present.insert(0, (cell_type_attention_plot(by_type, names, work / "attention_by_cell_type.png"), caption))
    elif (folder.path / "attention_by_cell_type.png").is_file():
        present.insert(0, (folder.path / "attention_by_cell_type.png", caption))
    if not by_type and not present:
        return
    s = report.section("Where the model looks")
    if by_type:
        report.table(
            s,
            ["true class", "cell type", "cells", "mean relative attention"],
            [
                [label, kind, str(v["n_cells"]), f"{v['mean_relative_attention']:.3f}"]
                for label, kinds in by_type.items()
                for kind, v in kinds.items()
            ],
        )
        report.text(
            s,
            "Relative attention: a cell's attention weight times the number of cells of its patient; 1 is what "
            "every cell would get if the model looked at all alike, 3 means three times that.",
            note=True,
        )
    for png, caption in present:
        report.image(s, png, caption)


def gallery_section(report: Report, title: str, intro: str, galleries: list[Gallery]) -> None:
    if not galleries:
        return
    s = report.section(title)
    report.text(s, intro)
    for g in galleries:
        report.image(s, g.png, g.caption, anchor=gallery_anchor(g.patient))


def config_section(report: Report, folder: OutputFolder) -> None:
    if folder.run.config.is_file():
        text = folder.run.config.read_text(encoding="utf-8")
        fold = f"config.yaml: every setting the run used ({len(text.splitlines())} lines)"
        report.code(report.section("Resolved configuration"), text, fold=fold)


def provenance_section(report: Report, folder: OutputFolder) -> None:
    """Every key of ``run.json`` (command, data, versions, commit, host, device, ...) and the output's kind."""
    marker = folder.json(".smearmil.json") or {}
    rows = [["output folder", str(folder.path)], ["kind of output", folder.kind]]
    if marker.get("version"):
        rows.append(["written by smearmil", str(marker["version"])])
    rows += [[k, v] for k, v in flatten(folder.info)]
    s = report.section("Provenance")
    report.table(s, ["", "value"], rows)
    if not folder.info:
        report.text(
            s, "This folder has no run.json: the command and versions that made it are not recorded.", note=True
        )


def _choice(value: Any) -> str:
    return (
        str(value["chosen"]) if isinstance(value, dict) and "chosen" in value else "-" if value is None else str(value)
    )


def _expert(choice: dict[str, Any], kind: str, config: dict[str, Any]) -> str:
    """The ``image`` or ``attributes`` expert a model chose, or the one its config fixed (a single candidate:
    nothing to choose, so ``choices.json`` does not name it); ``none`` where it has none."""
    if f"{kind}_expert" in choice:
        return _choice(choice[f"{kind}_expert"])
    if not config:
        return "-"
    specs = config.get("image_expert" if kind == "image" else "attribute_expert") or []
    specs = specs if isinstance(specs, list) else [specs]
    if len(specs) != 1:
        return "none" if not specs else "-"
    try:
        return f"{ExpertSpec.model_validate(specs[0]).label} (the only candidate)"
    except ValueError:
        return "-"


def _input_name(name: str, attributes: list[str]) -> str:
    """A stacked fusion's input as a reader knows it: ``image`` -> image expert, ``attribute:1`` -> its name."""
    kind, _, index = name.partition(":")
    if kind == "attribute" and index.isdigit() and int(index) < len(attributes):
        return attributes[int(index)]
    what = {"image": "image expert", "attributes": "attribute expert"}.get(kind, kind)
    return f"{what} (class {index})" if index and kind in ("image", "attributes") else what


def _gates(folder: Path) -> list[float]:
    path = folder / "experts.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [float(r["gate_image_expert"]) for r in csv.DictReader(handle) if r.get("gate_image_expert")]


def _weights(choice: dict[str, Any], folder: Path) -> str:
    """What the chosen fusion weighs, in words: the stack's coefficients on named inputs, the mixture's gate
    on the model's test patients, the average's fixed halves."""
    fusion = _choice(choice.get("fusion_choice", choice.get("fusion")))
    if "coefficients" in choice:
        meta = RunDir(folder).read_json(folder / "experts.json") or {}
        attributes = list((meta.get("encoder") or {}).get("names") or [])
        terms = sorted(choice["coefficients"].items(), key=lambda kv: -abs(kv[1][0]))
        return "log-odds: " + " ".join(f"{v[0]:+.2f} × {_input_name(k, attributes)}" for k, v in terms)
    if "gate_weight" in choice:
        gates = _gates(folder)
        if not gates:
            return "gate g per patient"
        return (
            f"gate g: {sum(gates) / len(gates):.2f} on average over its {len(gates)} test patients "
            f"({min(gates):.2f} to {max(gates):.2f})"
        )
    return {
        "avg": "equal halves: the mean of the two experts' log-probabilities",
        "image-only": "the image expert alone",
        "attributes-only": "the attribute expert alone",
    }.get(fusion, "-")


def choices_section(report: Report, folder: OutputFolder) -> None:
    """What the method chose inside the training patients (each fold's, or the final model's): its experts,
    fusion, the fusion's weights and the threshold."""
    found = folder.chosen()
    if not found:
        return
    s = report.section("Choices made inside the training patients")
    report.text(
        s,
        "Each fitted model chose these from its own training patients' out-of-fold scores, never from the "
        "patients it is judged on. Fusion weights: a stack's coefficients on each input's log-odds (largest "
        "first); a mixture of experts gives each patient P = g × P(image expert) + (1 - g) × P(attribute "
        "expert), its gate g computed from the patient's cells and attributes (the gate's parameters are in "
        "each model's choices.json).",
    )
    rows = []
    for name, (where, c) in found.items():
        config = (RunDir(where).read_json(where / "experts.json") or {}).get("config") or {}
        rows.append(
            [
                name,
                _expert(c, "image", config),
                _expert(c, "attributes", config),
                _choice(c.get("fusion_choice", c.get("fusion"))),
                _weights(c, where),
                "-" if c.get("threshold") is None else f"{c['threshold']:.3f}",
            ]
        )
    report.table(s, ["model", "image expert", "attribute expert", "fusion", "fusion weights", "threshold"], rows)
