"""One loader for every kind of config (run, experts, baseline, ssl, head, compare): a YAML file or a
shipped preset; the schemas live together in ``training.config``.

A config may start from another with ``base: NAME_OR_PATH`` (a relative path is read relative to the
file that names it) and override any field. Mappings merge key by key, except two mappings that name
different components (``name``): the later one replaces the earlier; a bare name over a mapping of the
same component keeps the mapping. Overrides from the command line merge the same way. ``kind`` says
which command a config is for (no ``kind``: a run config).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

PRESETS = "smearmil.configs"
RUN = "run"
COMMANDS = {
    "run": "`smearmil train` or `smearmil cv`",
    "ssl": "`smearmil ssl pretrain`",
    "compare": "`smearmil compare`",
    "head": "`smearmil features cv --head`",
    "experts": "`smearmil train`, `smearmil cv` or `smearmil compare`",
    "baseline": "`smearmil train`, `smearmil cv` or `smearmil compare`",
}
NAMES = {
    "run": "a run",
    "ssl": "a pre-training",
    "compare": "a comparison",
    "head": "a MIL-head",
    "experts": "an experts",
    "baseline": "a baseline",
}
Schema = TypeVar("Schema", bound=BaseModel)
Generated = Callable[[str], "dict[str, Any] | None"]


def merge_dicts(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Nested update: ``top`` wins; mappings merge key by key unless they name different components."""
    out = dict(base)
    for key, value in top.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and not _names_differ(old, value):
            out[key] = merge_dicts(old, value)
        elif isinstance(value, str) and isinstance(old, dict) and old.get("name") == value:
            out[key] = old  # `method: swav` over `{name: swav, prototypes: 32}` keeps its parameters
        else:
            out[key] = value
    return out


def _names_differ(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return "name" in a and "name" in b and a["name"] != b["name"]


def _preset_text(name: str) -> str | None:
    entry = resources.files(PRESETS).joinpath(f"{name}.yaml")
    return entry.read_text(encoding="utf-8") if entry.is_file() else None


def parse_mapping(text: str, where: str) -> dict[str, Any]:
    """The YAML mapping in ``text``; a clear error naming ``where`` otherwise."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a config must be a mapping")
    return raw


def shipped_presets(kind: str | None = None) -> list[str]:
    """Names of the presets shipped in ``smearmil/configs`` (of one ``kind``, or all)."""
    names = sorted(p.name[:-5] for p in resources.files(PRESETS).iterdir() if p.name.endswith(".yaml"))
    if kind is None:
        return names
    return [n for n in names if parse_mapping(_preset_text(n) or "", n).get("kind", RUN) == kind]


def preset_summary(name: str) -> str:
    """The first sentence of a shipped preset's opening comment: what it is."""
    lines = []
    for line in (_preset_text(name) or "").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text[: end + 1] if end >= 0 else text


def preset_catalogue() -> dict[str, dict[str, str]]:
    """``configs/catalogue.json``: per preset, the job it is for and its measured figures (with their data)."""
    entry = resources.files(PRESETS).joinpath("catalogue.json")
    return dict(json.loads(entry.read_text(encoding="utf-8"))["presets"]) if entry.is_file() else {}


def config_kind(name_or_path: str | Path) -> str:
    """The ``kind`` a config file or shipped preset declares (``run`` when it declares none or is a
    generated name such as a paper row)."""
    if is_config_file(name_or_path):
        text: str | None = Path(name_or_path).read_text(encoding="utf-8")
    else:
        text = _preset_text(str(name_or_path))
    return str(parse_mapping(text, str(name_or_path)).get("kind", RUN)) if text is not None else RUN


def is_config_file(name_or_path: str | Path) -> bool:
    path = Path(name_or_path)
    return path.suffix in (".yaml", ".yml") and path.is_file()


def resolve(
    name_or_path: str | Path,
    kind: str,
    generated: Generated | None = None,
    hint: str = "",
    relative_to: Path | None = None,
    seen: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The mapping a config file or preset stands for, with its ``base`` chain merged in."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if relative_to is not None and path.suffix in (".yaml", ".yml") and not path.is_absolute():
        path = relative_to / path
    key = str(path.resolve()) if is_config_file(path) else text_name
    if key in seen:
        raise ValueError(f"config {text_name!r} includes itself through 'base'")
    if is_config_file(path):
        raw, where, folder = parse_mapping(path.read_text(encoding="utf-8"), str(path)), str(path), path.parent
    elif (text := _preset_text(text_name)) is not None:
        raw, where, folder = parse_mapping(text, f"preset {text_name}"), f"preset {text_name}", None
    elif generated is not None and (made := generated(text_name)) is not None:
        return made
    else:
        raise unknown_config(text_name, (kind,), hint)
    found = raw.pop("kind", RUN)
    if found != kind:
        raise ValueError(
            f"{where} is {NAMES.get(found, repr(found))} config, not {NAMES.get(kind, kind)} config: "
            f"use it with {COMMANDS.get(found, 'its command')}"
        )
    base = raw.pop("base", None)
    own_name = raw.pop("name", None) or (path.stem if path.suffix else text_name)
    if base:
        raw = merge_dicts(resolve(str(base), kind, generated, hint, folder, (*seen, key)), raw)
    raw["name"] = own_name
    return raw


def unknown_config(name: str, kinds: tuple[str, ...], hint: str = "", also: tuple[str, ...] = ()) -> ValueError:
    """The error for a config name that is neither a file nor a preset: the closest names first, then
    every preset of ``kinds``."""
    presets = [p for kind in kinds for p in shipped_presets(kind)]
    close = get_close_matches(name, [*presets, *also], n=3, cutoff=0.6)
    suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
    what = "a YAML file" if Path(name).suffix in (".yaml", ".yml") else "a preset"
    listed = ", ".join(presets) or "none"
    return ValueError(f"no config file or preset named {name!r}{suggestion} (give {what}; presets: {listed}{hint})")


def load_config_file(
    name_or_path: str | Path,
    schema: type[Schema],
    kind: str,
    overrides: dict[str, Any] | None = None,
    generated: Generated | None = None,
    hint: str = "",
) -> Schema:
    """``schema`` validated from a config file or preset of ``kind``, with nested ``overrides`` on top."""
    raw = merge_dicts(resolve(name_or_path, kind, generated, hint), overrides or {})
    if "kind" in schema.model_fields:
        raw["kind"] = kind
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ValueError(f"config {str(name_or_path)!r} is not valid:\n" + "\n".join(lines)) from None


def dump_yaml(config: BaseModel) -> str:
    """A resolved config as YAML, in field order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
