"""The import graph keeps its layers: the model knows nothing of training, data or the command line;
inference never imports training; only the command line parses arguments. Walked statically over
every module's imports, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "marionette"


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    root = PACKAGE / package
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


RULES = [  # (package, it must not import these)
    ("model", ("marionette.training", "marionette.data", "marionette.cli", "marionette.inference")),
    ("inference", ("marionette.training", "marionette.cli")),
    ("evaluation", ("marionette.training", "marionette.cli")),
    ("landmarks", ("marionette.training", "marionette.inference", "marionette.cli", "marionette.model")),
]


@pytest.mark.parametrize("package, forbidden", RULES, ids=[r[0] for r in RULES])
def test_layers(package: str, forbidden: tuple[str, ...]) -> None:
    bad = {f"{path.relative_to(PACKAGE)} imports {name}"
           for path in modules(package) for name in imports_of(path)
           if any(name == f or name.startswith(f + ".") for f in forbidden)}
    assert not bad, sorted(bad)


def test_only_the_command_line_parses_arguments() -> None:
    parsers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "argparse" in imports_of(p))
    assert parsers == ["cli.py"]


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:  # the walker finds imports inside functions
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from marionette.training.loop import train\n")
    assert "marionette.training.loop" in imports_of(sample)
