"""The per-patient table: truth, probabilities, prediction, fold, gate and a link to the patient's cell
gallery; misclassified patients first, every column sortable in the page."""

from __future__ import annotations

from ..utils.outputs import digest
from ..utils.paths import slug
from .folder import OutputFolder, PatientRow
from .page import Cell, Report, Section
from .selection import ranked


def gallery_anchor(patient: str) -> str:
    """The id of a patient's gallery in the page (a patient id may hold any character)."""
    name = slug(patient)
    return f"gallery-{name}" if name == patient else f"gallery-{name}-{digest(patient)[:6]}"


def _p(value: float) -> Cell:
    return Cell(f"{value:.3f}", sort=f"{value:.6f}")


def _link(patient: str, anchors: dict[str, str]) -> Cell:
    return Cell("cells", href=f"#{anchors[patient]}") if patient in anchors else Cell("")


def table_order(folder: OutputFolder) -> list[str]:
    """Patients in the table's order: misclassified by the most methods first, then by fold and id; when
    no true class is known, the most uncertain call first."""
    if not folder.labelled and folder.methods:
        method = folder.methods[0]
        return [r.patient for r in ranked(method.rows, folder.class_names, folder.cuts(method))]
    first: dict[str, PatientRow] = {}
    wrong: dict[str, int] = {}
    for m in folder.methods:
        for r in m.rows:
            first.setdefault(r.patient, r)
            wrong[r.patient] = wrong.get(r.patient, 0) + int(r.wrong)
    return sorted(first, key=lambda p: (-wrong[p], first[p].fold, p))


def patients_section(report: Report, folder: OutputFolder, anchors: dict[str, str]) -> None:
    """One row per patient; a comparison gets one probability column per method."""
    methods = folder.methods
    if not methods:
        return
    names = folder.class_names
    s = report.section("Patients")
    if folder.kind == "compare":
        _compare_table(report, s, folder, anchors)
        return
    by_id = {r.patient: r for r in methods[0].rows}
    rows = [by_id[p] for p in table_order(folder)]
    truth = any(r.truth is not None for r in rows)
    gates = any(r.gate is not None for r in rows)
    where = "models" if folder.kind == "predict" else ("fold" if folder.kind != "train" else "split")
    probs = [names[1]] if len(names) == 2 else names
    header = ["patient", *(["true class"] if truth else []), *(f"P({c})" for c in probs), "prediction"]
    header += [*(["result"] if truth else []), where, *(["gate: image expert weight"] if gates else []), "gallery"]
    table: list[list[str | Cell]] = []
    for r in rows:
        line: list[str | Cell] = [r.patient, *([r.truth or "unknown"] if truth else [])]
        line += [_p(r.proba[c]) for c in probs] + [r.prediction]
        line += [_result(r)] if truth else []
        line += [r.models if folder.kind == "predict" else _fold(folder, r)]
        line += [_p(r.gate) if r.gate is not None else Cell("-")] if gates else []
        table.append([*line, _link(r.patient, anchors)])
    report.table(s, header, table, sortable=True, row_classes=["wrong" if r.wrong else "" for r in rows])
    first = "Misclassified patients first (shaded)" if truth else _uncertain_first(folder, names)
    notes = [f"{first}; click a column header to sort."]
    if len(names) == 2:
        notes.append(f"P({names[1]}): probability of the positive class.")
    if gates:
        notes.append(
            "Gate: the share of the decision the mixture of experts gave the image expert (1 - gate: attributes)."
        )
    if not truth:
        notes.append("The true class of these patients is unknown.")
    if methods[0].path != folder.path and folder.kind == "cv":
        notes.append(f"A repeated CV: its first seed's test predictions ({methods[0].path.name}).")
    report.text(s, " ".join(notes), note=True)


def _uncertain_first(folder: OutputFolder, names: list[str]) -> str:
    if len(names) != 2:
        return "Most uncertain calls first (the two most probable classes closest)"
    cut = folder.cuts(folder.methods[0]).get("", 0.5)
    return f"Most uncertain calls first (P({names[1]}) closest to the threshold, {cut:.3g})"


def _fold(folder: OutputFolder, r: PatientRow) -> str:
    if folder.kind == "train" and folder.metrics and folder.metrics.get("fold"):
        return f"test ({folder.metrics['fold']})"
    return r.fold


def _result(r: PatientRow) -> str:
    if r.truth is None:
        return "-"
    return "misclassified" if r.wrong else "correct"


def _compare_table(report: Report, s: Section, folder: OutputFolder, anchors: dict[str, str]) -> None:
    names = folder.class_names
    methods = folder.methods
    per: dict[str, dict[str, PatientRow]] = {m.name: {r.patient: r for r in m.rows} for m in methods}
    order = table_order(folder)
    first = {p: next(per[m.name][p] for m in methods if p in per[m.name]) for p in order}
    wrong = {p: sum(per[m.name][p].wrong for m in methods if p in per[m.name]) for p in order}
    binary = len(names) == 2
    header = ["patient", "true class", "fold"]
    header += [f"{m.name}: P({names[1]})" if binary else f"{m.name}: prediction (P)" for m in methods]
    header += ["methods wrong", "gallery"]
    table: list[list[str | Cell]] = []
    for p in order:
        line: list[str | Cell] = [p, first[p].truth or "unknown", first[p].fold]
        for m in methods:
            r = per[m.name].get(p)
            if r is None:
                line.append(Cell("-"))
                continue
            mark = " ✗" if r.wrong else ""
            if binary:
                line.append(Cell(f"{r.proba[names[1]]:.3f}{mark}", sort=f"{r.proba[names[1]]:.6f}"))
            else:
                line.append(Cell(f"{r.prediction} ({r.proba[r.prediction]:.2f}){mark}", sort=r.prediction))
        table.append([*line, str(wrong[p]), _link(p, anchors)])
    report.table(s, header, table, sortable=True, row_classes=["wrong" if wrong[p] else "" for p in order])
    report.text(
        s,
        "One row per patient, those misclassified by the most methods first; ✗: this method misclassified the "
        "patient. Click a column header to sort.",
        note=True,
    )
