"""The package's folders import one way: no import cycle between them, lazy imports included."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tevatron_tele"
# the folders from the lowest layer to the highest: a folder imports only folders before it
LAYERS = ("data", "retrieval", "mining", "backends", "training", "evaluation", "runner", "driver")


def _folder(module: str) -> str | None:
    """The package folder a module belongs to ('data', 'mining', ...), None for top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def _imports(path: Path) -> set[str]:
    """Every tevatron_tele module `path` imports, at the top or inside a function."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tevatron_tele"):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tevatron_tele"))
    return found


def folder_graph() -> dict[str, set[str]]:
    """{folder: the folders its modules import}."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        source = _folder(module)
        if source is None:
            continue
        for target in _imports(path):
            folder = _folder(target)
            if folder is not None and folder != source:
                graph[source].add(folder)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_folders_import_only_lower_layers():
    graph = folder_graph()
    assert set(graph) <= set(LAYERS), f"a folder the layer order does not name: {sorted(set(graph) - set(LAYERS))}"
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if LAYERS.index(b) > LAYERS.index(a))
    assert not upward, "imports of a higher layer: " + ", ".join(upward)


def test_no_import_cycle_between_folders():
    graph = folder_graph()
    assert {"data", "mining", "runner", "driver"} <= set(graph) | {d for ds in graph.values() for d in ds}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between folders: " + " -> ".join(cycle)
