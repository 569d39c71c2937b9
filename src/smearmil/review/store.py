"""The reviewers' decisions: an append-only audit trail in SQLite (WAL mode).

One row per action (a diagnosis, or a flag on a cell), with the reviewer, the time and the model's call at
that time. An edit adds a row; triggers refuse UPDATE and DELETE. Each call opens its own connection and
writes in one short transaction, so several threads and processes (reviewers) write without losing any.
The database records which cohort it belongs to and refuses another."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DIAGNOSIS_CONFIDENCE = ("low", "medium", "high")
CELL_FLAGS = ("artefact", "atypical", "smudge")
CLEARED = "none"  # a flag row that takes a cell's flag back

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cohort (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        patient TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('decision', 'flag')),
        diagnosis TEXT,
        confidence TEXT,
        comment TEXT,
        cell TEXT,
        flag TEXT,
        model_call TEXT NOT NULL,
        model_probability REAL NOT NULL,
        model_uncertain INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS actions_patient ON actions (patient, reviewer, kind)",
    """CREATE TRIGGER IF NOT EXISTS actions_no_update BEFORE UPDATE ON actions
        BEGIN SELECT RAISE(ABORT, 'the review trail is append-only: add a row instead'); END""",
    """CREATE TRIGGER IF NOT EXISTS actions_no_delete BEFORE DELETE ON actions
        BEGIN SELECT RAISE(ABORT, 'the review trail is append-only: rows are never deleted'); END""",
)


@dataclass(frozen=True)
class ModelCall:
    """What the model said of a patient when the reviewer acted."""

    call: str
    probability: float
    uncertain: bool


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class DecisionStore:
    """The decisions database of one cohort."""

    def __init__(self, path: str | Path, identity: str, folder: str | Path, n_patients: int):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise IsADirectoryError(f"{self.path} is a folder: give --db a file")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:  # one transaction: two reviews starting at once create it once
                db.execute(statement)
            stored = dict(db.execute("SELECT key, value FROM cohort").fetchall())
            if not stored:
                found = {"identity": identity, "folder": str(folder), "patients": str(n_patients)}
                db.executemany("INSERT INTO cohort (key, value) VALUES (?, ?)", found.items())
            db.execute("COMMIT")
        if stored and stored.get("identity") != identity:
            raise ValueError(
                f"{self.path} holds the decisions on the cohort of {stored.get('folder')} "
                f"({stored.get('patients')} patients), not on {folder} ({n_patients} patients: other patients or "
                "classes); give another --db for this cohort"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def _add(self, row: dict[str, Any]) -> int:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._connect() as db:
            cursor = db.execute(f"INSERT INTO actions ({columns}) VALUES ({marks})", list(row.values()))
            return int(cursor.lastrowid or 0)

    def _model(self, model: ModelCall) -> dict[str, Any]:
        return {
            "model_call": model.call,
            "model_probability": model.probability,
            "model_uncertain": int(model.uncertain),
        }

    def decide(
        self, reviewer: str, patient: str, diagnosis: str, confidence: str, comment: str, model: ModelCall
    ) -> int:
        """Record a diagnosis; returns the row's id."""
        if confidence not in DIAGNOSIS_CONFIDENCE:
            raise ValueError(f"confidence {confidence!r}: choose one of {', '.join(DIAGNOSIS_CONFIDENCE)}")
        row = {"at": now(), "reviewer": reviewer, "patient": patient, "kind": "decision", "diagnosis": diagnosis}
        return self._add({**row, "confidence": confidence, "comment": comment, **self._model(model)})

    def flag(self, reviewer: str, patient: str, cell: str, flag: str, model: ModelCall) -> int:
        """Flag a cell (``CLEARED`` takes the flag back); returns the row's id."""
        if flag not in (*CELL_FLAGS, CLEARED):
            raise ValueError(f"flag {flag!r}: choose one of {', '.join((*CELL_FLAGS, CLEARED))}")
        row = {"at": now(), "reviewer": reviewer, "patient": patient, "kind": "flag", "cell": cell, "flag": flag}
        return self._add({**row, **self._model(model)})

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [dict(r) for r in db.execute(sql, args).fetchall()]

    def latest_decisions(self, patient: str | None = None) -> list[dict[str, Any]]:
        """Each reviewer's latest decision per patient (of ``patient`` only, when given)."""
        where = "AND a.patient = ?" if patient is not None else ""
        return self._rows(
            "SELECT * FROM actions a WHERE a.kind = 'decision' "
            + where
            + " AND a.id = (SELECT MAX(b.id) FROM actions b WHERE b.kind = 'decision' "
            "AND b.patient = a.patient AND b.reviewer = a.reviewer) ORDER BY a.patient, a.reviewer",
            (patient,) if patient is not None else (),
        )

    def current_flags(self, patient: str | None = None) -> list[dict[str, Any]]:
        """Each reviewer's standing flag per cell (its latest, unless taken back)."""
        where = "AND a.patient = ?" if patient is not None else ""
        rows = self._rows(
            "SELECT * FROM actions a WHERE a.kind = 'flag' "
            + where
            + " AND a.id = (SELECT MAX(b.id) FROM actions b WHERE b.kind = 'flag' AND b.patient = a.patient "
            "AND b.reviewer = a.reviewer AND b.cell = a.cell) ORDER BY a.patient, a.cell, a.reviewer",
            (patient,) if patient is not None else (),
        )
        return [r for r in rows if r["flag"] != CLEARED]

    def history(self, patient: str) -> list[dict[str, Any]]:
        """Every action on ``patient``, oldest first."""
        return self._rows("SELECT * FROM actions WHERE patient = ? ORDER BY id", (patient,))

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) AS n FROM actions")[0]["n"])

    def cohort(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._rows("SELECT key, value FROM cohort")}
