"""The command tree, the console, and the guard that turns data and usage errors into a clear exit."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperOption

from .. import __version__
from ..data.problems import DataError
from ..utils.progress import console as err_console
from ..utils.progress import line_buffered

F = TypeVar("F", bound=Callable[..., Any])


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"smearmil {__version__}\n")
        raise typer.Exit()


app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Deep multiple-instance learning on blood-smear cells."
)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Deep multiple-instance learning on blood-smear cells."""
    line_buffered()  # redirected to a log, results (stdout) and progress (stderr) keep their order


data_app = typer.Typer(no_args_is_help=True, help="Inspect, split and cache a data set.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print measured ratios.")
ssl_app = typer.Typer(no_args_is_help=True, help="Self-supervised cell encoders: pre-train, evaluate, compare.")
features_app = typer.Typer(no_args_is_help=True, help="Cached cell embeddings and MIL heads on them.")
cache_app = typer.Typer(no_args_is_help=True, help="The image cache: where it is, what it holds, clearing it.")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(ssl_app, name="ssl")
app.add_typer(features_app, name="features")
app.add_typer(cache_app, name="cache")
# pipes and CI logs get whole tables; markup off: names and paths from users print as they are
out = Console(width=None if sys.stdout.isatty() else 140, markup=False)

# help screens: a flag takes no value, so it shows no type tag (typer >= 0.2x prints `<bool>` beside it)
_display_type: Callable[[TyperOption, Any], str | None] | None = getattr(TyperOption, "display_type_rich", None)
if _display_type is not None:
    _shown = _display_type

    def _no_flag_type(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else _shown(self, ctx)

    TyperOption.display_type_rich = _no_flag_type  # type: ignore[method-assign]


def error_line(message: object, label: str = "error:", style: str = "red") -> Text:
    return Text.assemble((label, style), " ", str(message))


def command_line(ctx: Any) -> list[str]:
    """The command as given: its path and every parameter the user set on the command line."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params.get(param.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        elif getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
        else:
            for v in values:
                words += [param.opts[0], str(v)]
    return words


def guarded(fn: F) -> F:
    """Turn data and usage errors into a clear report and a non-zero exit, never a traceback; record the
    command line for run.json (sys.argv is another program's when smearmil runs in-process)."""
    signature = inspect.signature(fn, eval_str=True)
    context = inspect.Parameter("cli_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

    @wraps(fn)
    def wrapper(*args: Any, cli_context: typer.Context, **kwargs: Any) -> Any:
        from ..utils import provenance
        from ..utils.locks import release_all

        provenance.COMMAND_LINE = command_line(cli_context)
        quiet_unless_main_process()
        try:
            return fn(*args, **kwargs)
        except DataError as error:
            print_problems(error)
            raise typer.Exit(2) from None
        except (OSError, ValueError) as error:  # files the user named (missing, unwritable, not a folder), bad values
            err_console.print(error_line(error))
            raise typer.Exit(2) from None
        finally:  # the folders and caches this command used are free for others
            release_all()

    new = signature.replace(parameters=[*signature.parameters.values(), context])
    wrapper.__signature__ = new  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in new.parameters.values()}
    del wrapper.__wrapped__
    return wrapper  # type: ignore[return-value]


def quiet_unless_main_process() -> None:
    """In a run of several processes (DDP), only the main one prints results, progress and warnings."""
    from ..utils import progress
    from ..utils.distributed import is_main_process

    if not is_main_process():
        out.quiet = progress.console.quiet = True
        logging.getLogger("smearmil").setLevel(logging.ERROR)


def print_problems(error: DataError) -> None:
    table = Table(title="data problems", show_lines=False)
    for col in ("severity", "kind", "where", "message"):
        table.add_column(col, overflow="fold")
    for p in error.problems:
        table.add_row(p.severity, p.kind, p.where, p.message)
    err_console.print(table)
    err_console.print(error_line(str(error).splitlines()[0]))
