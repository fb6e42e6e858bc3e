"""The house's rules, read from the code's own imports: layers point down, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jestfilter"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every jestfilter module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("jestfilter")}


GRAPH = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}
MODULES = set(GRAPH)


def edges(module: str) -> set[str]:
    """The modules (not names inside them) ``module`` imports."""
    return {name for name in GRAPH[module] if name in MODULES and name != module}


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in edges(module):
            if in_package(module, target):
                continue  # a module and its package's __init__
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " → ".join([*path, module, target]))
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [])


# The house from the ground up: a module may import its own package and the ones before it.
# Data flows one way (shards → samples → super-batches → scores → selection → train step /
# writer / manifest); the CLI, the bootstrap pipeline and the batch jobs sit on top.
LAYERS = ["lazy", "errors", "studies", "selection", "data", "machine", "distributed", "models", "embeddings", "eval",
          "scores", "sinks", "config", "plan", "train", "results", "report", "datasets", "jobs", "pipeline", "commands",
          "cli", "__main__", "__init__"]


def layer(module: str) -> str:
    """``jestfilter.data.shards`` → ``data``; ``jestfilter`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert {layer(module) for module in MODULES} <= set(LAYERS)


def test_layers_import_only_the_layers_below():
    for module in MODULES:
        own = LAYERS.index(layer(module))
        bad = sorted(t for t in edges(module) if t != "jestfilter" and LAYERS.index(layer(t)) > own)
        assert not bad, f"{module} imports {bad} from a higher layer"


def test_no_relative_imports():  # they would hide an import from the rules above
    for path in PACKAGE.rglob("*.py"):
        relative = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path} uses a relative import"


def test_selection_imports_nothing_else_of_jestfilter():
    for module in MODULES:
        if in_package(module, "jestfilter.selection"):
            outside = sorted(t for t in edges(module) if not in_package(t, "jestfilter.selection"))
            assert not outside, f"{module} imports {outside}"


def test_only_the_cli_layer_imports_the_cli():
    cli_layer = ("jestfilter.cli", "jestfilter.__main__", "jestfilter.commands")
    for module in MODULES:
        if not any(in_package(module, layer) for layer in cli_layer):
            bad = sorted(t for t in edges(module) if any(in_package(t, layer) for layer in cli_layer))
            assert not bad, f"{module} imports {bad}"


def test_the_data_plane_imports_nothing_above_it():  # the run settings included: it offers data's options
    for module in MODULES:
        if in_package(module, "jestfilter.data"):
            outside = sorted(t for t in edges(module) if not in_package(t, "jestfilter.data")
                             and t not in ("jestfilter.errors", "jestfilter.lazy"))
            assert not outside, f"{module} imports {outside}"
