"""Progress people can follow: a Rich bar on a terminal, plain lines in a log; every line names its stage.

``with stage("fold 2/5"):`` names what runs inside it: a bar or line started within begins with the
names of every stage it is in (``cpu-moe · fold 2/5 · moe: gate · epoch 3/15``). When stderr is not a
terminal (a log file, a pipe, CI) nothing is redrawn and nothing wraps: a step of work prints a plain
line now and then (at most every ``LOG_EVERY`` seconds) and one when it ends; a training stage one line
per epoch (``Epochs``). Torch-free: the command line imports it to start.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

# markup off: messages carry users' names and paths ("[/]" in a label must print as itself); style
# with rich.text.Text where wanted
console = Console(stderr=True, markup=False)
LOG_EVERY = 10.0  # seconds: in a log, a step (or a stage's epochs) prints at most one line this often
_STAGES: ContextVar[tuple[str, ...]] = ContextVar("smearmil_stages", default=())


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name what runs inside: its progress lines start with this name (after those of enclosing stages)."""
    token = _STAGES.set((*_STAGES.get(), name))
    try:
        yield
    finally:
        _STAGES.reset(token)


def stage_label(*names: str) -> str:
    """The stages we are in, then ``names``, joined: ``cpu-moe · fold 2/5 · moe: gate``."""
    return " · ".join(n for n in (*_STAGES.get(), *names) if n)


def in_log() -> bool:
    """Whether progress goes to a log (stderr is not a terminal): plain lines instead of bars."""
    return not console.is_terminal


def say(text: str) -> None:
    """One plain progress line on stderr, never wrapped (a log's lines are read and searched whole)."""
    console.print(text, soft_wrap=True, highlight=False)


def line_buffered() -> None:
    """Standard output and error written line by line, also into a file or a pipe (where Python buffers
    stdout by blocks): in a log combining both, results and progress appear in the order they happened."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def duration(seconds: float) -> str:
    """``0:03:07``: hours, minutes, seconds."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def timing(elapsed: float, done: float, total: float | None) -> str:
    """``0:01:10 elapsed, ~0:02:20 left``: the time left at the pace so far, where it is known."""
    text = f"{duration(elapsed)} elapsed"
    if total and 0 < done < total:
        text += f", ~{duration(elapsed / done * (total - done))} left"
    return text


def make_progress(enabled: bool = True) -> Progress:
    """A progress display on stderr, so stdout stays clean for ``--json`` output."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        disable=not enabled,
        transient=False,
    )


class _Display:
    """A Rich bar on a terminal, or the clock of a log's plain lines."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.started = self.said = time.perf_counter()

    def open(self, completed: int = 0) -> None:
        self.started = self.said = time.perf_counter()
        if self.enabled and not in_log():
            self.bar = make_progress()
            self.bar.start()
            self.task = self.bar.add_task(escape(self.label), total=self.total, completed=completed, note="")

    @property
    def logs(self) -> bool:
        """Whether it prints plain lines (enabled, and no bar)."""
        return self.enabled and self.task is None

    def update(self, advance: int, description: str, note: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=advance, description=escape(description), note=note)

    def due(self) -> bool:
        """In a log: whether a line may print now (``LOG_EVERY`` seconds since the last one)."""
        return self.logs and time.perf_counter() - self.said >= LOG_EVERY

    def line(self, text: str) -> None:
        if self.logs:
            say(text)
            self.said = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


class Steps:
    """Count the work of one step, with the time left::

        with Steps("hand-crafted features", n_cells, unit="cells") as steps:
            steps.advance(128)

    A Rich bar on a terminal; in a log a plain line at most every ``LOG_EVERY`` seconds and one when the
    work ends (``hand-crafted features: 384/1000 cells (38%) · 0:00:40 elapsed, ~0:01:04 left``)."""

    def __init__(self, description: str, total: int | None, enabled: bool = True, unit: str = ""):
        self.label, self.total, self.unit = stage_label(description), total, unit
        self.done, self.note, self._noted = 0, "", False
        self._display = _Display(self.label, total, enabled)

    def __enter__(self) -> Steps:
        self._display.open()
        return self

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """``n`` more done; ``note`` says what runs now (shown beside the count). Where notes are given, a
        log's line prints as a new piece of work starts (so its note is what runs), else as one ends."""
        self.done += n
        self._noted = self._noted or note is not None
        self.note = self.note if note is None else note
        self._display.update(n, self.label, self.note)
        starts = note is not None or not self._noted
        if starts and self._display.due() and self.done != self.total:
            self._display.line(self.text())

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        count = f"{self.done}/{self.total}{unit}" if self.total else f"{self.done}{unit}"
        if self.total:
            count += f" ({100 * self.done // self.total}%)"
        parts = [f"{self.label}: {count}", *([self.note] if self.note else [])]
        return " · ".join([*parts, timing(self._display.elapsed, self.done, self.total)])

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._display.close()
        if kind is None:
            self.note = ""
            self._display.line(self.text())


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with progress (``Steps``, one step per item); its last line prints when the
    iteration ends (first in a ``zip``, which stops at its shortest argument)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Steps(description, total, enabled) as steps:
        for item in items:
            yield item
            steps.advance()


class Epochs:
    """A training stage's progress, its epochs counted from 1.

    On a terminal a bar over all its training steps (so the time left is the stage's), the epoch and its
    last metrics beside it; in a log one plain line per epoch, ``<stage> · epoch 3/15 · <metrics> ·
    0:00:12 elapsed, ~0:00:48 left`` (where epochs take less than ``LOG_EVERY`` seconds, the first, the
    last and one every ``LOG_EVERY`` seconds). ``first``: the epoch a resumed stage starts at (from 0)."""

    def __init__(
        self, title: str, epochs: int, steps_per_epoch: int | None, first: int = 0, enabled: bool = True
    ) -> None:
        self.label, self.epochs, self.first, self.note = stage_label(title), epochs, first, ""
        total = epochs * steps_per_epoch if steps_per_epoch else None
        self._display = _Display(f"{self.label} · epoch {first + 1}/{epochs}", total, enabled)
        self._steps_per_epoch = steps_per_epoch

    def __enter__(self) -> Epochs:
        return self.open()

    def open(self) -> Epochs:
        """Start the clock (and the bar on a terminal)."""
        self._display.open(self.first * (self._steps_per_epoch or 0))
        return self

    def step(self, epoch: int) -> None:
        """One training step of ``epoch`` (from 0) done."""
        self._display.update(1, self._title(epoch), self.note)

    def epoch_done(self, epoch: int, note: str = "") -> None:
        """``epoch`` (from 0) done; ``note``: its metrics."""
        self.note = note
        self._display.update(0, self._title(epoch), note)
        if epoch == self.first or epoch + 1 >= self.epochs or self._display.due():
            done, total = epoch + 1 - self.first, self.epochs - self.first
            parts = [self._title(epoch), *([note] if note else []), timing(self._display.elapsed, done, total)]
            self._display.line(" · ".join(parts))

    def _title(self, epoch: int) -> str:
        return f"{self.label} · epoch {epoch + 1}/{self.epochs}"

    def close(self) -> None:
        self._display.close()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
