"""The package's import graph: one wing per concern, imports only downward, never in a circle.

Every module of ``src/dermseg`` is read with :mod:`ast` (nothing is imported), and every import
of a dermseg module is an edge: at module level, inside functions, under ``TYPE_CHECKING``,
``from dermseg.x import y`` (to ``dermseg.x.y`` when that is a module, else to ``dermseg.x``)
and relative imports. Lazy and typing-only imports count: a circle hidden inside a function is
still a circle (STYLE.md, "Layout").

The checkers take a graph, so that the tests at the end can show each of them failing on a
small made-up graph.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "dermseg"

#: The layers, lowest first: a module may import its own wing and the wings of lower layers. A
#: wing is a subpackage (``dermseg.models``) or a module at the package root (``dermseg.config``).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "ground floor",
        frozenset({"errors", "files", "_version", "attributes", "labels", "encoding", "yaml_files"}),
    ),
    ("config", frozenset({"config"})),
    ("models/losses/data", frozenset({"data", "models", "losses"})),
    ("inference", frozenset({"inference"})),
    ("evaluation", frozenset({"evaluation"})),
    ("training", frozenset({"training"})),
    ("report/serve", frozenset({"report", "serve"})),
    ("reproduce/demo", frozenset({"reproduce", "demo"})),
    ("cli", frozenset({"cli", "__main__"})),
)

#: ``dermseg/__init__.py``, the package face: above everything (no module imports it), it may
#: import the ground floor at module level and any wing lazily (``Segmenter`` from a function),
#: so that ``import dermseg`` stays light.
FACE = "__init__"
FACE_EAGER = frozenset({"ground floor"})

#: The modules allowed at the package root; anything else belongs in a wing.
ROOT_MODULES = frozenset(
    {
        "__init__",
        "__main__",
        "_version",
        "errors",
        "files",
        "attributes",
        "labels",
        "encoding",
        "yaml_files",
        "config",
        "demo",
    }
)


#: Circles tolerated, each as the set of modules on it (none: the export <-> segmenter circle is
#: gone); the test fails on any other circle, and on an entry here that is no longer a circle.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Import:
    """One import of a dermseg module by another: where it is and whether it runs at import time."""

    target: str
    line: int
    lazy: bool = False  # inside a function (runs when called)
    typing: bool = False  # under ``if TYPE_CHECKING:`` (never runs)

    def describe(self) -> str:
        kind = " (lazy)" if self.lazy else " (typing only)" if self.typing else ""
        return f"line {self.line}{kind}"


#: module -> the dermseg modules it imports. Modules are dotted names; a package is named by its
#: ``__init__``'s name (``dermseg.models``), the package face is ``dermseg``.
Graph = Mapping[str, list[Import]]


# --------------------------------------------------------------------------- reading the tree


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file, for every module of ``package`` under ``src``."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, list[str]]]:
    """``(module imported from, names imported from it)`` for one import statement or call."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, []
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's own package, one level up per extra dot
            package = module.split(".") if is_package else module.split(".")[:-1]
            anchor = package[: len(package) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        yield base, [alias.name for alias in node.names]
    elif isinstance(node, ast.Call):  # importlib.import_module("dermseg.x") / __import__("dermseg.x")
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value, []


def imports_of(source: str, module: str, modules: Iterable[str], is_package: bool = False) -> list[Import]:
    """The imports of dermseg modules in ``source`` (the text of ``module``), resolved to modules."""
    known = set(modules)
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing: bool) -> None:
        for base, names in _imported_names(node, module, is_package):
            if base != PACKAGE and not base.startswith(PACKAGE + "."):
                continue
            targets = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            if len(targets) < len(names) or not names:  # a name defined in ``base`` itself
                while base not in known and "." in base:  # ``import dermseg.x.y`` of a non-module
                    base = base.rsplit(".", 1)[0]
                targets.append(base)
            found.extend(Import(t, node.lineno, lazy, typing) for t in targets if t != module)
        # a function's body runs when it is called (its decorators and defaults at import time)
        body = node.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else None
        guarded = node.body if isinstance(node, ast.If) and _is_type_checking(node.test) else []
        for child in ast.iter_child_nodes(node):
            in_body = child is body or (isinstance(body, list) and any(child is b for b in body))
            visit(child, lazy or in_body, typing or any(child is g for g in guarded))

    visit(ast.parse(source), lazy=False, typing=False)
    return found


def build_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, list[Import]]:
    """The import graph of every module of ``package`` under ``src``."""
    names = module_names(src, package)
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, names, path.name == "__init__.py")
        for name, path in names.items()
    }


# --------------------------------------------------------------------------- the checkers


def find_cycles(graph: Graph) -> list[list[str]]:
    """One shortest circle ``[a, b, ..., a]`` per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def edges(v: str) -> list[str]:
        return sorted({i.target for i in graph.get(v, []) if i.target != v})

    def connect(v: str) -> None:  # recursive: the graph is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    def shortest_from(start: str, group: set[str]) -> list[str]:
        """The shortest circle through ``start`` inside ``group`` (breadth-first, back to ``start``)."""
        parent: dict[str, str] = {}
        queue = deque([start])
        while queue:
            v = queue.popleft()
            for w in edges(v):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w in group and w not in parent:
                    parent[w] = v
                    queue.append(w)
        raise AssertionError(f"{start} is on no circle of {sorted(group)}")  # not in a group of 2+

    cycles = [min((shortest_from(v, g) for v in sorted(g)), key=len) for g in groups]
    return sorted(cycles)


def wing_of(module: str, package: str = PACKAGE) -> str:
    """The wing of a module: ``dermseg.models.heads`` -> ``models``, ``dermseg.config`` -> ``config``;
    the package face ``dermseg`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else FACE


def layer_of(wing: str, layers: tuple[tuple[str, frozenset[str]], ...] = LAYERS) -> int | None:
    """The rank of ``wing`` in ``layers`` (0 = lowest); the face is above all; ``None``: unknown."""
    if wing == FACE:
        return len(layers)
    return next((rank for rank, (_, wings) in enumerate(layers) if wing in wings), None)


def layer_violations(
    graph: Graph,
    layers: tuple[tuple[str, frozenset[str]], ...] = LAYERS,
    face_eager: frozenset[str] = FACE_EAGER,
) -> list[str]:
    """Every import of a higher layer by a lower one, of an unknown wing, and every eager import
    of the package face beyond ``face_eager``; one line each."""
    names = {rank: name for rank, (name, _) in enumerate(layers)} | {len(layers): "package face"}
    found = []
    for module in sorted(graph):
        wing = wing_of(module)
        rank = layer_of(wing, layers)
        if rank is None:
            found.append(f"{module}: wing {wing!r} is in no layer (add it to the layer table)")
            continue
        for imp in graph[module]:
            other = wing_of(imp.target)
            other_rank = layer_of(other, layers)
            if other == wing or other_rank is None:
                continue  # within a wing; an unknown wing is reported as a module of its own
            where = f"{module} -> {imp.target} ({imp.describe()})"
            if other_rank > rank:
                found.append(f"{where}: {names[rank]} imports {names[other_rank]}, a higher layer")
            elif wing == FACE and not (imp.lazy or imp.typing) and names[other_rank] not in face_eager:
                found.append(f"{where}: the package face imports {names[other_rank]} eagerly")
    return found


def stray_root_modules(modules: Iterable[str], allowed: frozenset[str] = ROOT_MODULES) -> list[str]:
    """Modules at the package root (files, not subpackages) that are not in ``allowed``."""
    modules = list(modules)
    packages = {m.rsplit(".", 1)[0] for m in modules}
    return sorted(m for m in modules if m.count(".") == 1 and m not in packages and wing_of(m) not in allowed)


def _explain(cycle: list[str], graph: Graph) -> str:
    steps = []
    for a, b in zip(cycle, cycle[1:], strict=False):
        how = ", ".join(i.describe() for i in graph[a] if i.target == b)
        steps.append(f"  {a} -> {b}  [{how}]")
    return "\n".join(steps)


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return build_graph()


def test_the_graph_sees_the_package(graph: dict[str, list[Import]]) -> None:
    # a sanity check of the reader on imports known to be there, of each kind
    assert len(graph) > 50 and "dermseg.cli.app" in graph and "dermseg" in graph
    assert any(i.target == "dermseg.errors" and not i.lazy for i in graph["dermseg.cli.app"])
    assert any(i.target == "dermseg.inference.segmenter" and i.lazy for i in graph["dermseg"])
    assert any(i.target == "dermseg.cli.data_commands" for i in graph["dermseg.cli"])  # package-relative


def test_no_import_cycles(graph: dict[str, list[Import]]) -> None:
    cycles = find_cycles(graph)
    new = [c for c in cycles if frozenset(c) not in KNOWN_CYCLES]
    report = "\n\n".join(f"{' -> '.join(c)}\n{_explain(c, graph)}" for c in new)
    assert not new, f"{len(new)} import cycle(s):\n{report}"
    gone = KNOWN_CYCLES - {frozenset(c) for c in cycles}
    assert not gone, f"no longer circles, remove them from KNOWN_CYCLES: {[sorted(g) for g in gone]}"


def test_imports_go_only_downward(graph: dict[str, list[Import]]) -> None:
    found = layer_violations(graph)
    assert not found, f"{len(found)} import(s) against the layers:\n" + "\n".join(found)


def test_the_package_root_holds_only_the_allowed_modules(graph: dict[str, list[Import]]) -> None:
    stray = stray_root_modules(graph)
    assert not stray, f"modules at the package root that belong in a wing: {stray}"


# --------------------------------------------------------------------------- the checkers fail


def _graph(edges: dict[str, list[str | Import]]) -> dict[str, list[Import]]:
    return {m: [i if isinstance(i, Import) else Import(i, 1) for i in ts] for m, ts in edges.items()}


def test_a_cycle_is_found_and_printed_shortest_first() -> None:
    graph = _graph(
        {
            "dermseg.models.a": ["dermseg.models.b"],
            "dermseg.models.b": ["dermseg.models.c", "dermseg.errors"],
            "dermseg.models.c": ["dermseg.models.a", "dermseg.models.b"],
            "dermseg.errors": [],
            "dermseg.x": ["dermseg.y"],
            "dermseg.y": [Import("dermseg.x", 7, lazy=True)],  # a lazy import hides no circle
        }
    )
    assert find_cycles(graph) == [
        ["dermseg.models.b", "dermseg.models.c", "dermseg.models.b"],
        ["dermseg.x", "dermseg.y", "dermseg.x"],
    ]
    assert "dermseg.y -> dermseg.x  [line 7 (lazy)]" in _explain(find_cycles(graph)[1], graph)
    assert find_cycles(_graph({"dermseg.a": ["dermseg.b"], "dermseg.b": ["dermseg.errors"]})) == []


def test_an_upward_import_is_found() -> None:
    graph = _graph(
        {
            "dermseg.models.heads": ["dermseg.errors", "dermseg.models.aspp", "dermseg.training.loop"],
            "dermseg.errors": [Import("dermseg.config", 3, lazy=True)],  # lazy is no excuse
            "dermseg.losses.focal": ["dermseg.models.heads", "dermseg.config"],  # sideways and down: fine
            "dermseg.cli.app": ["dermseg.training.loop", "dermseg"],  # the face is above everything
            "dermseg": [
                "dermseg._version",
                "dermseg.config",
                Import("dermseg.inference.segmenter", 9, lazy=True),
            ],
            "dermseg.plugins.x": [],
        }
    )
    assert layer_violations(graph) == [
        "dermseg -> dermseg.config (line 1): the package face imports config eagerly",
        "dermseg.cli.app -> dermseg (line 1): cli imports package face, a higher layer",
        "dermseg.errors -> dermseg.config (line 3 (lazy)): ground floor imports config, a higher layer",
        "dermseg.models.heads -> dermseg.training.loop (line 1): models/losses/data imports training, "
        "a higher layer",
        "dermseg.plugins.x: wing 'plugins' is in no layer (add it to the layer table)",
    ]


def test_a_module_at_the_root_outside_the_list_is_found() -> None:
    modules = ["dermseg", "dermseg.errors", "dermseg.tricks", "dermseg.models", "dermseg.models.tricks"]
    assert stray_root_modules(modules) == ["dermseg.tricks"]


@pytest.mark.parametrize(
    ("module", "is_package", "source", "targets"),
    [
        ("dermseg.cli.app", False, "from dermseg.errors import DermsegError", ["dermseg.errors"]),
        ("dermseg.cli.app", False, "from dermseg import errors, __version__", ["dermseg.errors", "dermseg"]),
        ("dermseg.cli.app", False, "import dermseg.models.heads as h", ["dermseg.models.heads"]),
        ("dermseg.cli.app", False, "from . import data_commands", ["dermseg.cli.data_commands"]),
        ("dermseg.cli", True, "from .app import main", ["dermseg.cli.app"]),
        (
            "dermseg.cli.app",
            False,
            "from ..models import heads, UNetASPP",
            ["dermseg.models.heads", "dermseg.models"],
        ),
        (
            "dermseg.cli.app",
            False,
            "import importlib\nimportlib.import_module('dermseg.errors')",
            ["dermseg.errors"],
        ),
        ("dermseg.cli.app", False, "import numpy\nfrom torch import nn", []),
    ],
)
def test_imports_are_resolved_to_modules(
    module: str, is_package: bool, source: str, targets: list[str]
) -> None:
    modules = ["dermseg", "dermseg.errors", "dermseg.models", "dermseg.models.heads", "dermseg.cli"]
    modules += ["dermseg.cli.app", "dermseg.cli.data_commands"]
    assert [i.target for i in imports_of(source, module, modules, is_package)] == targets


def test_lazy_and_typing_imports_are_marked() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dermseg.models import heads\n"
        "def f():\n"
        "    from dermseg import errors\n"
    )
    found = imports_of(source, "dermseg.cli.app", ["dermseg", "dermseg.errors", "dermseg.models.heads"])
    assert found == [Import("dermseg.models.heads", 3, typing=True), Import("dermseg.errors", 5, lazy=True)]
