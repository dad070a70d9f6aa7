"""The import graph keeps its layers and has no cycle. Each layer imports only the layers listed
below it in LAYERS (and the base modules); only the command line parses arguments. Walked
statically over every module's imports, including those inside functions and under TYPE_CHECKING.
The map is docs/architecture.md's "Layers"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "marionette"

BASE = {  # below every layer: imports only each other (and no layer)
    "marionette", "marionette.config", "marionette.errors", "marionette.resources", "marionette.media",
    "marionette.tensors", "marionette.devices", "marionette.content_credentials", "marionette.provenance",
    "marionette.outputs",
}
TOP_LEVEL = {  # modules outside the layer packages, and their layer
    "marionette.warp": "warp", "marionette.bench": "bench", "marionette.bench_model": "bench",
    "marionette.bench_train": "bench", "marionette.app": "app", "marionette.cli": "cli",
}
LAYERS = {  # layer -> the layers it may import besides itself and the base
    "landmarks": set(),
    "warp": {"landmarks"},
    "data": {"landmarks", "warp"},
    "model": {"landmarks"},
    "landmark_transformer": {"landmarks", "data"},
    "inference": {"landmarks", "warp", "data", "model", "landmark_transformer"},
    "evaluation": {"landmarks", "warp", "data", "model", "landmark_transformer", "inference"},
    "training": {"landmarks", "warp", "data", "model", "landmark_transformer", "inference", "evaluation"},
    "bench": {"landmarks", "warp", "data", "model", "landmark_transformer", "inference", "evaluation", "training"},
    "app": {"landmarks", "inference"},
    "cli": {"landmarks", "warp", "data", "model", "landmark_transformer", "inference", "evaluation", "training",
            "bench", "app"},
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """marionette.x.y for root/x/y.py (a package's __init__.py: marionette.x)."""
    parts = ["marionette", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str = "") -> set[str]:
    """Every module a file imports, as absolute names: `from a import b` is a.b where that is one of
    the package's modules, else a; a relative import is resolved against `name`, the file's module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module for alias in node.names}
    return names


GRAPH = {name: {i for i in imports_of(path, name) if i in MODULES} for name, path in MODULES.items()}


def layer_of(module: str) -> str:
    """The layer a module of the package belongs to ("base" for the base modules)."""
    if module in BASE:
        return "base"
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    package = module.split(".")[1]
    assert package in LAYERS, f"{module}: in no layer (add it to BASE, TOP_LEVEL or LAYERS)"
    return package


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module: str) -> None:
    layer_of(module)


@pytest.mark.parametrize("layer", ["base", *LAYERS])
def test_layers_import_only_the_layers_below(layer: str) -> None:
    allowed = {"base", layer} | LAYERS.get(layer, set())
    bad = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if layer_of(module) == layer
                 for target in targets if layer_of(target) not in allowed)
    assert not bad, bad


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` as [a, b, ..., a], or [] when there is none."""
    state: dict[str, str] = {}  # module -> "open" while its imports are walked, then "done"
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (found := walk(target)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return []


def test_no_import_cycle() -> None:
    assert cycle(GRAPH) == []


def test_only_the_command_line_parses_arguments() -> None:
    parsers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "argparse" in imports_of(p))
    assert parsers == ["cli.py"]


def test_the_walk_sees_imports_inside_functions_and_from_packages(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from marionette.training.loop import train\n    from marionette import bench\n")
    assert imports_of(sample) == {"marionette.training.loop", "marionette.bench"}
    inside = PACKAGE / "inference" / "x.py"  # relative imports, as if written in marionette.inference.x
    sample.write_text("from . import neural\nfrom ..data.config import PreprocessConfig\n")
    assert imports_of(sample, module_name(inside)) == {"marionette.inference.neural", "marionette.data.config"}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
