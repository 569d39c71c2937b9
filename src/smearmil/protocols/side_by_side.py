"""Our figures beside the published ones: the Markdown and CSV tables of ``smearmil reproduce``."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from ..utils.spreadsheet import SafeWriter
from .compare import LABELS

HEADERS = {
    **LABELS,
    "mean_set_disagreement": "sets disagreeing with the majority (mean)",
    "set_accuracy": "sets called right",
    "majority_vote_accuracy": "majority-vote accuracy",
    "disagreement_rate": "patients with any disagreement",
}


def _cell(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("mean") is None:
        return "-"
    std = value.get("std")
    return f"{value['mean']:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def table_markdown(result: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """Ours and published side by side for every metric, then what differs."""
    head = "| row | data | " + " | ".join(f"{HEADERS[m]}: ours | published" for m in metrics) + " |"
    rule = "|---|---|" + "---|---|" * len(metrics)
    budget = f", budget `{result['budget']}`" if result["budget"] else ""
    lines = [
        f"**{result['title']}**",
        "",
        f"From {result['paper']}. Ours: {result['protocol']}; on {result['data']}{budget} (split: "
        f"{result['split']}). Published: the paper's figure where one is stored, else -.",
        "",
        head,
        rule,
    ]
    for name, row in result["rows"].items():
        ours = ["not run" if row.get("not_run") else _cell(row["ours"].get(m)) for m in metrics]
        cells = [f"{mine} | {_published(row['published'].get(m))}" for mine, m in zip(ours, metrics)]
        lines.append(f"| {name} | {row['data']} | " + " | ".join(cells) + " |")
    lines += ["", "**What differs**", "", *(f"- {n}" for n in result["notes"])]
    return "\n".join(lines) + "\n"


def _published(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_csv(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
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
