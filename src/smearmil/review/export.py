"""``smearmil review DIR --export FILE``: the latest decision per patient and reviewer, then the standing
cell flags, in one CSV (a ``kind`` column tells them apart), every cell safe to open in a spreadsheet,
written atomically."""

from __future__ import annotations

from pathlib import Path

from ..utils.atomic import write_text
from ..utils.spreadsheet import csv_text
from .store import DecisionStore

COLUMNS = [
    "kind",
    "patient",
    "reviewer",
    "at",
    "diagnosis",
    "agrees_with_model",
    "confidence",
    "comment",
    "cell",
    "flag",
    "model_call",
    "model_probability",
    "model_uncertain",
]


def export_rows(store: DecisionStore) -> list[list[object]]:
    """The header, then one row per latest decision, then one per standing flag."""
    rows: list[list[object]] = [list(COLUMNS)]
    for d in store.latest_decisions():
        agrees = "yes" if d["diagnosis"] == d["model_call"] else "no"
        rows.append([
            "decision", d["patient"], d["reviewer"], d["at"], d["diagnosis"], agrees, d["confidence"],
            d["comment"] or "", "", "", d["model_call"], d["model_probability"], bool(d["model_uncertain"]),
        ])  # fmt: skip
    for f in store.current_flags():
        rows.append([
            "flag", f["patient"], f["reviewer"], f["at"], "", "", "", "", f["cell"], f["flag"],
            f["model_call"], f["model_probability"], bool(f["model_uncertain"]),
        ])  # fmt: skip
    return rows


def export_csv(store: DecisionStore, target: str | Path) -> tuple[int, int]:
    """Write the export to ``target`` atomically; returns (decisions, flags) written."""
    rows = export_rows(store)
    write_text(target, csv_text(rows))
    kinds = [r[0] for r in rows[1:]]
    return kinds.count("decision"), kinds.count("flag")
