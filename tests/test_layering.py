"""The layering README promises, read from the source's own imports (every import statement,
those inside functions too): no circle, each layer imports only the layers below it, and each
third-party library stays behind its one module."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports: harness modules by full name, others by top package."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            for alias in node.names:  # `from pkg import mod` imports mod; `from mod import X`, mod
                full = f"{base}.{alias.name}"
                found.add(full if full in modules() else base)
    return frozenset(_resolve(name) for name in found if _resolve(name))


def _resolve(name: str) -> str:
    if not name.startswith("harness"):
        return name.split(".")[0]
    while name and name not in modules():  # `from harness.x import Name`: the module is x
        name = name.rpartition(".")[0]
    return name


def internal(module: str) -> set[str]:
    return {m for m in imports(module) if m.startswith("harness") and m != module}


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for found in internal(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return seen


def test_no_module_imports_itself_back_through_others():
    circles = sorted(m for m in modules() if m in closure(m) and m != "harness")
    assert circles == []


@pytest.mark.parametrize("module", [m for m in sorted(modules()) if m.startswith("harness.report")])
def test_a_report_runs_without_the_training_and_model_code(module):
    reached = closure(module) | {module}
    assert not {m for m in reached if m.startswith(("harness.train", "harness.models",
                                                    "harness.metrics"))}
    assert not {m for m in reached for lib in imports(m) if lib in {"torch", "lightning"}}
    assert {m for m in reached if m.startswith("harness.runs")} <= {
        "harness.runs.records", "harness.runs.workspace"}


def test_models_import_torch_only():
    """A user can copy the layer out: models/ needs torch and the standard library alone."""
    for module in (m for m in modules() if m.startswith("harness.models")):
        outside = {m for m in internal(module) if not m.startswith("harness.models")}
        libraries = {m for m in imports(module) if not m.startswith("harness")}
        assert outside <= {"harness.errors", "harness.validate"}, module
        assert libraries - set(sys.stdlib_module_names) <= {"torch"}, module
    layer = {m for m in imports("harness.models.memory_layer") if not m.startswith("harness")}
    assert layer - set(sys.stdlib_module_names) == {"torch"}


@pytest.mark.parametrize("library, owners", [
    ("mlflow", ("harness.tracking.", "harness.report.reader")),
    ("fvcore", ("harness.metrics.flops",)),
    ("optuna", ("harness.ablate.",)),
    ("lightning", ("harness.train.", "harness.runs.checkpoint_store", "harness.ablate.trial",
                   "harness.data.datamodule")),
])
def test_each_library_stays_behind_its_modules(library, owners):
    users = {m for m in modules() if library in imports(m)}
    assert users and all(m.startswith(owners) for m in users), sorted(users)


def test_the_records_contract_and_workspace_import_nothing_of_the_harness():
    for module in ("harness.runs.records", "harness.runs.workspace", "harness.errors"):
        assert internal(module) == set()


def test_nothing_imports_the_command_line():
    assert [m for m in modules() if "harness.cli" in internal(m) and m != "harness.__main__"] == []
