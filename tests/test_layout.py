"""The architecture, checked: imports run one way, from the concepts below to those above, and never in a circle.

The sub-packages of ``awares_tool`` form layers (README, "Layout"); a module may import its own layer and the
layers below it, never above. Every import counts, also those inside functions: a lazy import that runs back up
is still a circle a reader has to untangle. ``awares_tool`` never imports ``awares_train``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: layer of each top-level part of awares_tool, lowest first
LAYERS: dict[str, int] = {
    "errors": 0, "_moved": 0,
    "tokens": 1,
    "crops": 2,
    "images": 3,
    "protocol": 4,
    "backends": 5, "gguf": 5,
    "episode": 6,
    "adapters": 7, "serve": 7, "demo": 7, "ui": 8,
    "cli": 9,
}


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = {**_modules("awares_tool"), **_modules("awares_train")}


def _imports(name: str, path: Path) -> set[str]:
    """Every awares module ``name`` imports (anywhere in the file), resolved to a module of MODULES."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for t in targets:
            while t and t not in MODULES:  # `import awares_tool.x.y` -> the deepest module we know
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "awares_tool" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def test_every_awares_tool_part_has_a_layer():
    parts = {m.split(".")[1] for m in MODULES if m.startswith("awares_tool.")}
    assert parts <= set(LAYERS) | {"models"}, f"give these a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("awares_tool.")))
def test_awares_tool_imports_only_its_own_layer_and_below(module):
    own = _layer(module)
    up = sorted(t for t in GRAPH[module] if t == "awares_tool" or t.startswith("awares_train")
                or (_layer(t) is not None and _layer(t) > own))
    assert not up, f"{module} (layer {own}) imports {up}, which sit above it"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert not _cycles(GRAPH), f"modules importing each other in a circle: {_cycles(GRAPH)}"


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """Guards the scan itself: a check that finds nothing on a broken graph would pass forever."""
    assert "awares_tool.images.lowres" in GRAPH["awares_tool.episode.costs"]
    assert "awares_tool.tokens" in GRAPH["awares_tool.images.lowres"]
    assert _layer("awares_tool.episode.loop") > _layer("awares_tool.images.open")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
