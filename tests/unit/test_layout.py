"""The shape of the code: small modules, small functions, no import circles.

docs/architecture.md promises modules under 500 lines, functions under 60 lines, and imports
that never go round in a circle (function-level imports included: they hide circles).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2] / "maintkit"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_no_module_over_500_lines() -> None:
    big = [
        f"{p.relative_to(ROOT.parent)}: {n}" for p in _sources() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES
    ]
    assert big == []


def test_no_function_over_60_lines() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}: {size}")
    assert long == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_circle() -> None:
    graph = grimp.build_graph("maintkit", exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m.startswith("maintkit")}
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_architecture_doc_names_every_module() -> None:
    """docs/architecture.md's tree has one line for every module (and none that is gone)."""
    text = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("\n## The tree\n", 1)[1]
    listed: set[str] = set()
    folder = ""
    for line in tree.splitlines():
        if line.startswith("**`") and line.endswith("/`**"):
            folder = line[3:-4]
        elif line.startswith("- `") and "`:" in line:
            listed.add(f"{folder}/{line[3 : line.index('`:')]}")
    actual = {str(p.relative_to(ROOT.parent)) for p in _sources()}
    assert sorted(actual - listed) == []
    assert sorted(listed - actual) == []
