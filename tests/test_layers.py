"""The package is layered: data -> models -> training -> evaluation -> protocols -> explain/report -> review -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import smearmil

ORDER = [
    "utils",
    "data",
    "models",
    "baselines",
    "training",
    "evaluation",
    "protocols",
    "explain",
    "report",
    "review",
    "bench",
    "demo",
    "api",
    "cli",
]
PACKAGE = Path(smearmil.__file__).parent


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "smearmil" and parts[1] in ORDER else None


def _imports(path: Path) -> set[str]:
    package = ".".join(("smearmil", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def test_lower_layers_never_import_higher_ones() -> None:
    offences = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own not in ORDER:
            continue
        for module in _imports(path):
            layer = _layer(module)
            if layer and ORDER.index(layer) > ORDER.index(own):
                offences.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offences, offences


def _private_imports(path: Path) -> list[str]:
    """``from X import _name`` in ``path``: a private name taken from another module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            found += [
                f"{path.name}:{node.lineno} imports {alias.name} from {'.' * node.level}{node.module or ''}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    tests = Path(__file__).parent
    offences = [hit for path in [*PACKAGE.rglob("*.py"), *tests.rglob("*.py")] for hit in _private_imports(path)]
    assert not offences, offences


def test_the_private_import_scan_finds_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from .plots import _save, confusion_plot\nfrom __future__ import annotations\n")
    assert _private_imports(module) == ["m.py:1 imports _save from .plots"]
