"""Every docstring example in the two packages runs and prints what it shows.

Modules are found by scanning the sources for ``>>> ``, so a new doctest is picked up without
editing this file. A module whose import needs an extra that is not installed (torch, trl, ...) is
skipped rather than failed; a missing module of our own is still an error. A module that imports a
heavy library at import time, itself or through our own modules, is marked ``slow``: importing trl
alone takes tens of seconds on a busy machine.
"""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from awares_tool.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("awares_tool", "awares_train")
HEAVY = {"torch", "transformers", "trl", "peft", "accelerate", "datasets", "llama_cpp", "vllm"}


def _modules_with_doctests() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>> " not in path.read_text(encoding="utf-8"):
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def _source(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _top_level_imports(name: str) -> set[str]:
    """Absolute names of the modules ``name`` imports when it is imported (not inside functions)."""
    path = _source(name)
    if path is None:
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    # Module body plus the bodies of top-level if/try blocks; functions and classes import lazily.
    stack = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.add(prefix)
            out.update(f"{prefix}.{alias.name}" for alias in node.names)  # may name submodules
        elif isinstance(node, (ast.If, ast.Try)):
            stack.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            stack.extend(child for h in getattr(node, "handlers", []) for child in h.body)
    return out


def _imports_heavy(name: str, seen: set[str] | None = None) -> bool:
    seen = set() if seen is None else seen
    if name in seen:
        return False
    seen.add(name)
    for imported in _top_level_imports(name):
        root = imported.split(".")[0]
        if root in HEAVY:
            return True
        if root in PACKAGES:
            # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c first.
            parts = imported.split(".")
            if any(_imports_heavy(".".join(parts[:i]), seen) for i in range(1, len(parts) + 1)):
                return True
    return False


MODULES = _modules_with_doctests()


def _import_or_skip(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except MissingExtraError as e:
        pytest.skip(f"{name} needs an extra that is not installed: {e}")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] not in PACKAGES:
            pytest.skip(f"{name} needs {e.name!r}, which is not installed")
        raise


def test_discovery_finds_the_known_doctests() -> None:
    # Guards the scan itself: if it found nothing, every parametrized case below would vanish.
    assert {"awares_tool.tokens.families", "awares_train.metrics", "awares_train.grpo.rewards"} <= set(MODULES)


@pytest.mark.parametrize(
    "name", [pytest.param(m, marks=pytest.mark.slow) if _imports_heavy(m) else m for m in MODULES]
)
def test_module_doctests_pass(name: str) -> None:
    module = _import_or_skip(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    # ">>> " outside a docstring would make this module's case run nothing; that is a test bug.
    assert result.attempted > 0, f"{name} contains '>>> ' but doctest found no examples in it"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {name}"
