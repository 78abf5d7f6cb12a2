"""The proxy's modules import one another in layers: no module imports, however indirectly, itself."""

from __future__ import annotations

import ast
from pathlib import Path

import lipsync_proxy

PACKAGE = "lipsync_proxy"
SOURCE = Path(lipsync_proxy.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """What `path` imports, at run time or for type checking alike: modules, and for `from x import y`
    both `x` and `x.y` (which is a module when `x` is a package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in SOURCE.rglob("*.py")}
    return {name: (imported_names(path) & set(paths)) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path around each cycle found by a depth-first search."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return found


def test_the_graph_sees_the_imports_the_modules_make() -> None:
    graph = import_graph()
    assert "lipsync_proxy.app" in graph["lipsync_proxy.cli"]
    assert "lipsync_proxy.backends" in graph["lipsync_proxy.dispatch"]
    # `from lipsync_proxy import mapping` imports the module mapping.
    assert "lipsync_proxy.mapping" in graph["lipsync_proxy.connection"]


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_of_the_proxy_imports_itself_through_others() -> None:
    assert cycles(import_graph()) == []
