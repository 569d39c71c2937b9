"""Options shared by many commands: how to read a cohort, and how to resolve, override and show a config.

``@data_flags`` gives a command the data options (``--layout``, ``--csv``, ``--spec``, ``--id-column``,
``--label-column``, ``--attributes``, ``--class-names``, ``--reference-date``, ``--missing-policy``) and
passes them as one ``data: DataFlags``; ``@config_flags`` adds ``--set``, ``--print-config``, ``--epochs``,
``--accelerator``, ``--devices`` and ``--precision`` as ``flags: ConfigFlags``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ..data.layouts import LAYOUTS
from ..data.options import DataOptions
from ..utils.config_files import dump_yaml
from .app import out

DataPath = Annotated[Path, typer.Argument(metavar="DATA", help="Folder of the data set.")]
RunPath = Annotated[Path, typer.Argument(metavar="RUN", help="Folder written by train, cv or features train.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help=f"auto, or one of: {LAYOUTS.choices()}.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
ConfigSeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed (default: the config's).")]
SplitsOpt = Annotated[Path | None, typer.Option("--splits", help="Splits file to use instead of new folds.")]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Number of folds.")]
TableJsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json instead of a table.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
SetsModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        help="Image sets: auto (each patient's acquisitions when every patient has two or more, else random), "
        "given, or random (overlapping subsets of one acquisition).",
    ),
]
SetsFileOpt = Annotated[
    Path | None,
    typer.Option("--sets-file", help="CSV mapping cells to acquisitions (columns file, set); implies given."),
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Image cache folder (default: $SMEARMIL_CACHE_DIR or ~/.cache).")
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace OUT if it holds this kind of smearmil output of other inputs (a folder smearmil did not "
        "write is never touched).",
    ),
]
ConfigOpt = Annotated[
    str,
    typer.Option(
        "--config",
        help="YAML file, preset (recommended: cpu-fusion; `smearmil list` describes them all) or a paper row "
        "(e.g. cnn-mean-k32, moe-p2-k32, mlp).",
    ),
]


def split_list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _option(annotation: Any, *names: str, help: str, metavar: str | None = None) -> Any:
    return Annotated[annotation, typer.Option(*names, help=help, metavar=metavar)]


DATA_PARAMS: dict[str, tuple[Any, Any]] = {
    "layout": (_option(str, "--layout", help=f"auto, or one of: {LAYOUTS.choices()}."), "auto"),
    "csv": (_option(Path | None, "--csv", help="Clinical table, if the layout does not find it."), None),
    "spec": (_option(Path | None, "--spec", help="YAML file of data options (columns, classes, ...)."), None),
    "id_column": (_option(str | None, "--id-column", help="Patient-id column."), None),
    "label_column": (_option(str | None, "--label-column", help="Label column (e.g. Dx)."), None),
    "attributes": (_option(str | None, "--attributes", help="Comma-separated attribute columns."), None),
    "class_names": (_option(str | None, "--class-names", help="Comma-separated class names, in label order."), None),
    "reference_date": (_option(str | None, "--reference-date", help="Date (YYYY-MM-DD) for ages from DOB."), None),
    "missing_policy": (
        _option(str | None, "--missing-policy", help="Missing attributes: error, or impute (training median)."),
        None,
    ),
}
CONFIG_PARAMS: dict[str, tuple[Any, Any]] = {
    "set_values": (
        _option(
            list[str] | None,
            "--set",
            help="Override one config value, KEY.PATH=VALUE (repeatable), e.g. train.lr=1e-3.",
        ),
        None,
    ),
    "print_config": (_option(bool, "--print-config", help="Print the resolved config and exit."), False),
    "epochs": (
        _option(
            int | None,
            "--epochs",
            help="Training epochs (run configs: train.epochs; a stage with its own epochs keeps them, "
            "--set train.stages.<stage>.epochs=N changes those).",
        ),
        None,
    ),
    "accelerator": (_option(str | None, "--accelerator", help="Lightning accelerator: auto, cpu, gpu, mps."), None),
    "devices": (_option(str | None, "--devices", help="Lightning devices: auto, a count, or ids (0,1)."), None),
    "precision": (_option(str | None, "--precision", help="32-true, 16-mixed or bf16-mixed (default: auto)."), None),
    "strategy": (
        _option(str | None, "--strategy", help="Lightning strategy: auto, or ddp (one process per device)."),
        None,
    ),
}


@dataclass
class DataFlags:
    """The data options given on the command line (None: not given)."""

    layout: str = "auto"
    csv: Path | None = None
    spec: Path | None = None
    id_column: str | None = None
    label_column: str | None = None
    attributes: str | None = None
    class_names: str | None = None
    reference_date: str | None = None
    missing_policy: str | None = None

    def given(self) -> dict[str, Any]:
        """The options given, as DataOptions fields (a --spec file's values under the flags)."""
        flags: dict[str, Any] = {
            "layout": None if self.layout == "auto" else self.layout,
            "csv": str(self.csv) if self.csv else None,
            "id_column": self.id_column,
            "label_column": self.label_column,
            "attributes": split_list(self.attributes),
            "class_names": split_list(self.class_names),
            "reference_date": date.fromisoformat(self.reference_date).isoformat() if self.reference_date else None,
            "missing_policy": self.missing_policy,
        }
        flags = {k: v for k, v in flags.items() if v is not None}
        if self.spec is not None:
            return DataOptions.from_yaml(self.spec, **flags).model_dump(mode="json", exclude_unset=True)
        return flags

    def options(self, base: DataOptions | None = None, **extra: Any) -> DataOptions:
        """DataOptions: ``base`` (e.g. a trained model's) with the given options and ``extra`` on top."""
        start = base.model_dump(mode="json") if base is not None else {}
        return DataOptions.model_validate(
            {**start, **self.given(), **{k: v for k, v in extra.items() if v is not None}}
        )


# where --epochs and the Lightning flags go in the configs that are not a method's (a method declares its own)
FLAG_PATHS: dict[str, dict[str, str]] = {
    "ssl": {k: k for k in ("epochs", "accelerator", "devices", "precision", "strategy")},
    "head": {"epochs": "epochs"},
}


def flag_paths(kind: str) -> dict[str, str]:
    from ..training.methods import METHODS, method_flag_paths

    return method_flag_paths(kind) if kind in METHODS else FLAG_PATHS.get(kind, {})


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.pooling.name=max"]`` -> nested overrides; values are read as YAML."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: write KEY.PATH=VALUE, e.g. --set train.epochs=5")
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part} is set twice, as a value and as a section")
        try:
            node[leaf] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            problem = str(getattr(error, "problem", None) or error).strip()
            raise ValueError(
                f"--set {item!r}: {text!r} is not a YAML value ({problem}); quote text, e.g. "
                f"--set '{key}=\"{text}\"', or close the brackets"
            ) from None
    return tree


def nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    tree: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


@dataclass
class ConfigFlags:
    """--set, --print-config, --epochs and the Lightning flags given on the command line."""

    set_values: list[str] = field(default_factory=list)
    print_config: bool = False
    epochs: int | None = None
    accelerator: str | None = None
    devices: str | None = None
    precision: str | None = None
    strategy: str | None = None

    def overrides(self, kind: str) -> dict[str, Any]:
        """Nested overrides for a config of ``kind`` (``--set`` last, so it wins)."""
        from ..utils.config_files import merge_dicts

        tree: dict[str, Any] = {}
        paths = flag_paths(kind)
        for name in ("epochs", "accelerator", "devices", "precision", "strategy"):
            value = getattr(self, name)
            if value is None:
                continue
            if name not in paths:
                raise ValueError(
                    f"--{name} does not apply to a config of kind {kind}; set what you mean with --set KEY=VALUE"
                )
            if name == "devices":
                value = int(value) if str(value).isdigit() else value
            tree = merge_dicts(tree, nested(paths[name], value))
            if name == "epochs" and kind == "run":  # --epochs means epochs, also on a schedule in iterations
                tree = merge_dicts(tree, {"train": {"max_steps": 0}})
        return merge_dicts(tree, parse_set(self.set_values or []))

    def show(self, config: Any) -> None:
        """With --print-config: print the resolved config as YAML and stop the command."""
        if self.print_config:
            text = config.to_yaml() if hasattr(config, "to_yaml") else dump_yaml(config)
            out.print(text.rstrip("\n"), soft_wrap=True, highlight=False)
            raise typer.Exit(0)


def _inject(params: dict[str, tuple[Any, Any]], target: str, build: Callable[..., Any]) -> Callable[[Any], Any]:
    def decorator(fn: Any) -> Any:
        signature = inspect.signature(fn, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != target]
        if any(p.name in params for p in kept):
            raise TypeError(f"{fn.__name__} declares a shared option itself")
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, (annotation, default) in params.items()
        ]

        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[target] = build(**{name: kwargs.pop(name, default) for name, (_, default) in params.items()})
            return fn(*args, **kwargs)

        new = signature.replace(parameters=kept + added)
        wrapper.__signature__ = new  # type: ignore[attr-defined]
        # typer reads the signature and the type hints: both from here, resolved, not the inner function's
        wrapper.__annotations__ = {p.name: p.annotation for p in new.parameters.values()}
        del wrapper.__wrapped__
        return wrapper

    return decorator


data_flags = _inject(DATA_PARAMS, "data", DataFlags)
config_flags = _inject(CONFIG_PARAMS, "flags", lambda **kw: ConfigFlags(**{**kw, "set_values": kw["set_values"] or []}))
