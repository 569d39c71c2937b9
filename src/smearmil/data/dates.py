"""Dates of birth as real clinical exports write them, and ages at a reference date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_SLASH = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$")
_DASH = re.compile(r"^\s*(\d{1,2})-(\d{1,2})-(\d{4})\s*$")
_ISO = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*$")


@dataclass(frozen=True)
class ParsedDate:
    value: date | None
    note: str | None = None  # why the value is missing, or why it is uncertain


def _make(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_dob(text: str) -> ParsedDate:
    """Parse ``%m/%d/%Y``, ``%d-%m-%Y`` or ISO ``%Y-%m-%d``.

    The separator chooses the convention (slash: month first; dash: day first). A date that is
    impossible in its convention but valid with day and month swapped is returned swapped, with a
    note saying it is ambiguous; a date valid in neither has no value.
    """
    text = text.strip()
    if not text:
        return ParsedDate(None, "empty date")
    if m := _ISO.match(text):
        y, mo, d = (int(g) for g in m.groups())
        value = _make(y, mo, d)
        return ParsedDate(value, None if value else f"impossible date {text!r}")
    for pattern, month_first, convention in ((_SLASH, True, "month/day/year"), (_DASH, False, "day-month-year")):
        if m := pattern.match(text):
            a, b, y = (int(g) for g in m.groups())
            month, day = (a, b) if month_first else (b, a)
            value = _make(y, month, day)
            if value is not None:
                return ParsedDate(value)
            swapped = _make(y, day, month)
            if swapped is not None:
                return ParsedDate(swapped, f"{text!r} is impossible as {convention}; read as {swapped.isoformat()}")
            return ParsedDate(None, f"impossible date {text!r}")
    return ParsedDate(None, f"unrecognised date {text!r} (expected MM/DD/YYYY, DD-MM-YYYY or YYYY-MM-DD)")


def age_at(birth: date, reference: date) -> float:
    """Age in years (fractional) at the reference date."""
    return (reference - birth).days / 365.25
