"""Data problems: what is wrong, where (patient, file or CSV row), and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from rich.text import Text

from ..utils.progress import console

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding of the validation. ``where`` names a patient, a file or a CSV row."""

    kind: str
    where: str
    message: str
    severity: Severity = "error"

    def to_json(self) -> dict[str, str]:
        """The public JSON form: ``{"kind", "where", "message"}``."""
        d = asdict(self)
        d.pop("severity")
        return d


class DataError(Exception):
    """Raised when a cohort cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: Iterable[Problem], summary: str | None = None):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        head = summary or f"{len(errors)} data problem(s) must be fixed"
        lines = [head] + [f"  [{p.kind}] {p.where}: {p.message}" for p in errors[:20]]
        if len(errors) > 20:
            lines.append(f"  ... and {len(errors) - 20} more")
        super().__init__("\n".join(lines))


def errors_in(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that make a cohort unusable."""
    return [p for p in problems if p.severity == "error"]


SKIPPED = ("unreadable_image", "empty_bag")  # what reading a cohort leaves out, with a warning


def warn_skipped(problems: Iterable[Problem]) -> None:
    """Name on stderr every image left out as unreadable and every patient left with none, one line each
    (``warning: <file>: patient P1: cannot be decoded (...); skipped. ...``): every command reading a
    cohort (or caching its images) says so; ``data inspect`` lists them in its report instead."""
    for p in problems:
        if p.kind in SKIPPED:
            console.print(Text.assemble(("warning:", "yellow"), f" {p.where}: {p.message}"), soft_wrap=True)
