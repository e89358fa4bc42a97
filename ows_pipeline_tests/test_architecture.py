"""The layout holds: no import circle anywhere in `ows_pipeline` (lazy imports inside functions
included), engines never import the Dagster wiring in `ows_pipeline/defs/`, and the warehouse
schema imports no stage."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ows_pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every `ows_pipeline` module that `path` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from a import b` imports module `a.b` when it is one, else a name of `a`
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_ows_pipeline():
    cycles = _cycles(_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_engines_never_import_the_dagster_wiring():
    graph = _graph()
    wiring = ("ows_pipeline.defs", "ows_pipeline.definitions")
    offenders = {
        module: sorted(t for t in targets if t.startswith(wiring))
        for module, targets in graph.items()
        if not module.startswith(wiring) and module != "ows_pipeline.cli" and not module.startswith("ows_pipeline.demo")
    }
    assert not {m: t for m, t in offenders.items() if t}


def test_the_warehouse_schema_imports_no_stage():
    graph = _graph()
    allowed = ("ows_pipeline.warehouse.schema", "ows_pipeline.source.schema")
    offenders = {
        module: sorted(t for t in targets if not t.startswith(allowed) and t != "ows_pipeline")
        for module, targets in graph.items()
        if module.startswith("ows_pipeline.warehouse.schema")
    }
    assert not {m: t for m, t in offenders.items() if t}
