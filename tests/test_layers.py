"""The package is layered: data -> models -> training -> evaluation -> explain/report -> cli."""

from __future__ import annotations

import ast
from pathlib import Path

import smearmil

ORDER = ["utils", "data", "models", "baselines", "training", "evaluation", "explain", "report", "bench", "demo", "cli"]
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
