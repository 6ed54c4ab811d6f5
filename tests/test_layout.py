"""The package's layering, read off every module's imports (including imports inside functions):
the model never imports the command line, training, evaluation or the generator (`wetok.ar`),
which imports neither the command line nor training; evaluation does not import training; data loading and token files do not import the model;
the run machinery both trainers share (`wetok.runs`) knows neither trainer nor model."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from support import REPO

PACKAGE = REPO / "src" / "wetok"
MODEL = ("wetok.config", "wetok.tokenizer", "wetok.nn", "wetok.images", "wetok.errors", "wetok.files")
"""The model and what it stands on."""
NETWORK = ("wetok.tokenizer", "wetok.nn", "wetok.weights", "wetok.codec", "wetok.tiling")
RUNS_STANDS_ON = ("wetok.runs", "wetok.errors", "wetok.files", "wetok.weights", "wetok.distributed", "wetok.images", "wetok.config")
"""All that `wetok.runs` may import of wetok (`wetok.weights` for its safe `read_torch_file`)."""


def module_name(path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path) -> set[str]:
    """Absolute names of every wetok module `path` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("wetok"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("wetok"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` names modules
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in MODULES.items() if within(m, sources)
                  for t in targets if within(t, forbidden))


def test_the_import_reader_sees_relative_and_nested_imports():
    assert "wetok.weights" in MODULES["wetok.tokenizer"]  # `from .weights import save_tokenizer` inside Tokenizer.save
    assert "wetok.cli.options" in MODULES["wetok.cli.encode"]  # `from . import options`


@pytest.mark.parametrize(
    "sources, forbidden",
    [
        (MODEL, ("wetok.cli", "wetok.training", "wetok.evaluation", "wetok.ar", "wetok.codec", "wetok.batch")),
        (("wetok.weights", "wetok.tokens", "wetok.tiling", "wetok.codec"), ("wetok.cli", "wetok.training", "wetok.evaluation", "wetok.ar")),
        (("wetok.evaluation",), ("wetok.training", "wetok.cli")),
        (("wetok.training",), ("wetok.cli", "wetok.evaluation")),
        (("wetok.training.data", "wetok.evaluation.data", "wetok.tokens", "wetok.images", "wetok.sources", "wetok.ar.shards",
          "wetok.ar.training.data"), NETWORK),
        (("wetok.metrics", "wetok.losses", "wetok.distributed"), ("wetok.cli", "wetok.training", "wetok.evaluation", "wetok.ar")),
        (("wetok.ar",), ("wetok.cli", "wetok.training")),
        (("wetok.evaluation", "wetok.training", "wetok.batch"), ("wetok.ar",)),
        (("wetok.runs",), ("wetok.training", "wetok.ar", "wetok.cli", "wetok.evaluation", "wetok.tokenizer", "wetok.nn")),
        (("wetok.demos",), ("wetok.cli", "wetok.training", "wetok.runs")),
        (("wetok.ar.training",), ("wetok.training",)),
    ],
    ids=["model", "weights-tokens-codec", "evaluation", "training", "data", "metrics-losses-distributed", "generator",
         "tokenizer-tools", "runs", "demos", "generator-training"],
)
def test_layering(sources, forbidden):
    assert offenders(sources, forbidden) == []


def test_runs_imports_only_what_it_stands_on():
    assert "wetok.runs.checkpoints" in MODULES and "wetok.distributed" in MODULES["wetok.runs.checkpoints"]
    assert sorted(f"{m} imports {t}" for m, targets in MODULES.items() if within(m, ("wetok.runs",))
                  for t in targets if not within(t, RUNS_STANDS_ON)) == []


def test_importing_the_library_loads_neither_the_command_line_nor_training():
    code = "import sys, wetok; print(' '.join(m for m in sys.modules if m.startswith('wetok')))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                check=True).stdout.split())
    assert "wetok.codec" in loaded
    assert not any(within(m, ("wetok.cli", "wetok.training", "wetok.evaluation", "wetok.ar", "wetok.runs")) for m in loaded)
