"""Help, version, list and every usage, config or data error reach the user without torch, Lightning,
scikit-learn or matplotlib: a fresh interpreter runs each and reports what it imported. The shipped
registry entries are declared in light modules; each declaration must say what its class says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

HEAVY = ("torch", "lightning", "sklearn", "matplotlib")
PROBE = """
import json, sys
sys.argv = ["smearmil", *json.loads(sys.argv[1])]
from smearmil.cli import app
try:
    app()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def run_fresh(*args: str) -> tuple[int, list[str], str]:
    """Exit code, heavy modules imported, and the output of ``smearmil ARGS`` in a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True, timeout=120
    )
    *text, last = done.stderr.rstrip("\n").split("\n")
    found = json.loads(last)
    return int(found["code"] or 0), found["heavy"], " ".join((done.stdout + "\n".join(text)).split())


@pytest.fixture(scope="module")
def bad_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "bad.yaml"
    path.write_text("base: cpu-cnn\nmodel:\n  pooling: {name: lse, r: -1}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--help"], 0, "Deep multiple-instance learning"),
        (["--version"], 0, "smearmil "),
        (["list"], 0, "cpu-fusion"),
        (["cv", "--bogus"], 2, "No such option"),
        (["cv", "--config", "cpu-fusin", "x"], 2, "did you mean cpu-fusion"),
        (["cv", "/nonexistent-cohort"], 2, "is not a folder"),
        (["train", "/nonexistent-cohort", "--config", "cpu-cnn", "--set", "model.pooling.name=maxx"], 2, "mean max"),
        (["compare", "/nonexistent-cohort"], 2, "is not a folder"),
        (["ssl", "cv", "/nonexistent-cohort"], 2, "is not a folder"),
        (["ssl", "pretrain", "/nonexistent-cohort"], 2, "is not a folder"),
        (["report", "/nonexistent-run"], 2, "is not a folder"),
        (["review", "/nonexistent-run"], 2, "is not a folder"),
        (["predict", "/nonexistent-run", "/nonexistent-cohort"], 2, "/nonexistent-run"),
    ],
)
def test_instant_commands_import_no_heavy_library(args: list[str], code: int, says: str) -> None:
    exit_code, heavy, text = run_fresh(*args)
    assert exit_code == code, text
    assert says in text
    assert heavy == [], f"smearmil {' '.join(args)} imported {heavy}"


def test_a_bad_value_in_a_config_file_is_reported_without_torch(bad_config: Path) -> None:
    exit_code, heavy, text = run_fresh("cv", "/nonexistent-cohort", "--config", str(bad_config))
    assert exit_code == 2 and "model.pooling" in text and "greater than 0" in text
    assert heavy == []


def test_list_shows_every_preset_and_every_paper_row() -> None:
    from smearmil.training.config import PAPER_ROWS, paper_preset, paper_row_names
    from smearmil.utils.config_files import shipped_presets

    _, _, text = run_fresh("list")
    for name in shipped_presets():
        assert name in text
    for pattern, _ in PAPER_ROWS:
        assert pattern in text
        assert all(paper_preset(name) is not None for name in paper_row_names(pattern)), pattern


def _registries() -> list:
    from smearmil.baselines.registry import BASELINES
    from smearmil.models.specs import ENCODERS, MODELS, POOLINGS
    from smearmil.training.config.components import CELL_SOURCES, FUSIONS, SSL_METHODS
    from smearmil.training.methods import METHODS

    return [BASELINES, ENCODERS, MODELS, POOLINGS, CELL_SOURCES, FUSIONS, SSL_METHODS, METHODS]


def test_every_declared_entry_is_registered_by_its_module_as_declared() -> None:
    from smearmil.baselines.registry import BASELINES
    from smearmil.models.specs import MODELS
    from smearmil.training.methods import METHODS

    for registry in _registries():
        for name in registry.names():
            entry = registry.get(name)  # imports the declaring module; fails if it does not register the name
            own = getattr(entry, "Params", None)
            if isinstance(own, type) and issubclass(own, BaseModel):
                assert own is registry.params(name), f"{registry.kind} {name}: Params differ from the declaration"
    for name in MODELS.names():
        assert tuple(MODELS.info(name)["stages"]) == MODELS.get(name).stage_names
    for name in BASELINES.names():
        assert tuple(BASELINES.info(name)["data"]) == BASELINES.get(name).data
    for name in METHODS.names():
        info, method = METHODS.info(name), METHODS.get(name)
        assert info["config"] is method.Config and info["flag_paths"] == method.flag_paths
        assert info.get("generated") == method.generated


def test_an_unknown_component_name_suggests_the_closest() -> None:
    from smearmil.models.specs import ModelConfig

    with pytest.raises(ValueError, match="did you mean attention"):
        ModelConfig.model_validate({"pooling": {"name": "atention"}})
