"""The package's import graph: no cycles, and no import from an earlier paper step to a later one.

Every ``from diff4mmlits… import`` is read from the source (imports inside functions included) and
each module is given its layer: the shared kit (data, config, run folder, stage contract, figures,
files…) at the bottom, then the paper's steps in order, then the run report, the pipeline and the
CLI. A module may import its own layer or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import diff4mmlits

PACKAGE = Path(diff4mmlits.__file__).parent

LAYERS: dict[str, int] = {
    "register": 1,
    "translate": 1,  # a library of unpaired translators; synthesize uses it for its CUT painter
    "inpaint": 2,
    "synthesize": 3,
    "segment": 4,
    "evaluate": 5,
    "report": 6,
    "pipeline": 7,
    "cli": 8,
    "api": 8,  # the Python API: a façade over the stages, as the command line is
}
"""Layer of each top-level module or stage package; everything else is the shared kit (layer 0)."""


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts).removesuffix(".__init__")] = path
    return names


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diff4mmlits"):
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def layer(module: str) -> int:
    """A stage package's ``config`` module is part of the configuration (layer 0), like ``config.py``."""
    parts = module.split(".")
    if len(parts) < 2 or parts[-1] == "config":
        return 0
    return LAYERS.get(parts[1], 0)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert "diff4mmlits.stage" in graph["diff4mmlits.pipeline"]
    assert "diff4mmlits.register.case" in graph["diff4mmlits.register"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_runs_from_an_earlier_step_to_a_later_one() -> None:
    upward = sorted(f"{source} → {target}" for source, targets in import_graph().items() for target in targets
                    if layer(target) > layer(source))
    assert upward == []


def test_no_stage_imports_evaluate_or_pipeline() -> None:
    graph = import_graph()
    for source, targets in graph.items():
        if layer(source) in (1, 2, 3, 4):
            assert not any(t.startswith(("diff4mmlits.evaluate", "diff4mmlits.pipeline")) for t in targets), source


def test_the_configuration_imports_no_registration_backend() -> None:
    """``config`` imports ``register.config``; the package's ``__init__`` pulled SimpleITK and scipy into
    every command through it."""
    import subprocess
    import sys

    code = "import sys, diff4mmlits.config; print(sorted(m for m in ('SimpleITK', 'scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
