"""The apps depend one way (docs/architecture.md): no module of a layer names a
layer above it in any import statement, at module level or inside a function.
Tests and migrations aside; the composition root (URL conf, API root,
settings) may import every app. `lint-imports` checks the same contract from
the import graph; this reads the source, so it needs no tool and catches an
import written as text that the graph might resolve differently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from imagineer_project.settings import BASE_DIR

LAYERS = ["imagineer_project", "albums", "labeling", "scraping", "training", "legacy"]
COMPOSITION_ROOT = {
    "imagineer_project/urls.py",
    "imagineer_project/api.py",
    "imagineer_project/settings.py",
}


def _modules(layer: str) -> list[Path]:
    return [
        path
        for path in sorted((BASE_DIR / layer).rglob("*.py"))
        if not {"tests", "migrations"} & set(path.relative_to(BASE_DIR).parts)
        and str(path.relative_to(BASE_DIR)) not in COMPOSITION_ROOT
    ]


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import statement in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, a.name.split(".")[0]) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(layer: str) -> list[str]:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    return [
        f"{path.relative_to(BASE_DIR)}:{line} imports {package}"
        for path in _modules(layer)
        for line, package in sorted(imported_packages(path))
        if package in above
    ]


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    assert upward_imports(layer) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.models import Lora\n")
    assert imported_packages(module) == {(2, "training")}
