"""Rich progress bars that every long step uses, silenced with ``enabled=False``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

# markup off: messages carry users' names and paths ("[/]" in a label must print as itself); style
# with rich.text.Text where wanted
console = Console(stderr=True, markup=False)


def make_progress(enabled: bool = True) -> Progress:
    """A progress display on stderr, so stdout stays clean for ``--json`` output."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(enabled) as progress:
        task = progress.add_task(escape(description), total=total)
        for item in items:
            yield item
            progress.advance(task)
