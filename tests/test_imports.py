"""The engine's import graph: no cycles, and no UI.

Every module under ``interp_core`` is parsed with :mod:`ast` (imports anywhere in the file count,
including function-local ones and those under ``if TYPE_CHECKING:``, because a cycle hidden in a
function is still a cycle), the graph of ``interp_core`` modules is built, and any strongly
connected component with more than one module, or a module importing itself, fails. The engine
must never import Streamlit or the app's ``ui`` package (README: the engine runs without the UI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "interp_core"

# TODO(#15, after the h3 merge): interp_core.commands.* import interp_core.cli.model_from_args
# (function-local) while interp_core.cli imports interp_core.commands to discover them. Move
# model_from_args below both (e.g. interp_core/cli_support.py), then empty this set.
KNOWN_CYCLES: set[frozenset[str]] = {frozenset({"interp_core.cli", "interp_core.commands", "interp_core.commands.*"})}
# Imports ast cannot see: cli.discover_commands() imports every module of interp_core.commands by name.
DYNAMIC_IMPORTS: dict[str, str] = {"interp_core.cli": "interp_core.commands."}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Absolute dotted names imported anywhere in ``path`` (relative imports resolved against ``name``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> {engine modules it imports}`` (``from pkg import name`` counts as importing ``pkg``
    and, when ``pkg.name`` is a module, that module too)."""
    modules = engine_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, name):
            if imported in modules:
                targets.add(imported)
            elif imported.rpartition(".")[0] in modules:  # `from interp_core.x import some_function`
                targets.add(imported.rpartition(".")[0])
        if name in DYNAMIC_IMPORTS:
            targets.update(m for m in modules if m.startswith(DYNAMIC_IMPORTS[name]))
        graph[name] = targets - {name} if path.name == "__init__.py" else targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components in no particular order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    return [c for c in strongly_connected(graph) if len(c) > 1 or any(v in graph[v] for v in c)]


def is_known(component: set[str]) -> bool:
    """The commands <-> cli cycle (see KNOWN_CYCLES): cli, the commands package and its modules only."""
    def kind(module: str) -> str:
        return "interp_core.commands.*" if module.startswith("interp_core.commands.") else module

    return frozenset(kind(m) for m in component) <= next(iter(KNOWN_CYCLES)) and "interp_core.cli" in component


class TestImportGraph:
    def test_parser_sees_function_local_imports(self, tmp_path):
        """An import inside a function body is an edge too (that is how patching <-> attribution hid)."""
        module = tmp_path / "m.py"
        module.write_text("def f():\n    from interp_core.attribution import x\n    import interp_core.names\n")
        assert {"interp_core.attribution", "interp_core.attribution.x", "interp_core.names"} <= imported_names(module, "m")

    def test_cycle_detection_finds_a_two_module_cycle(self):
        """The checker itself: a -> b -> a is a cycle, a -> b -> c is not."""
        assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [{"a", "b"}]
        assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []

    def test_graph_covers_the_engine(self):
        """Every engine module is a node, and known edges are there (the graph is not empty by mistake)."""
        graph = import_graph()
        assert {"interp_core.patching", "interp_core.attribution", "interp_core.head_id", "interp_core.arch.base"} <= set(graph)
        assert "interp_core.patch_pair" in graph["interp_core.attribution"]
        assert "interp_core.readout" in graph["interp_core.tuned_lens"]
        assert "interp_core.commands.circuits" in graph["interp_core.cli"]  # the dynamic discovery

    def test_no_import_cycles(self):
        """No interp_core module reaches itself through imports (function-local and type-only ones included)."""
        found = [sorted(c) for c in cycles(import_graph()) if not is_known(c)]
        assert not found, f"import cycles in the engine: {found}"

    @pytest.mark.xfail(strict=True, reason="TODO(#15): commands/* import interp_core.cli.model_from_args; "
                       "move it to a module below both (interp_core/cli_support.py) after the h3 merge")
    def test_no_commands_cli_cycle(self):
        """The one known cycle: interp_core.cli discovers commands, commands import cli.model_from_args."""
        assert not [c for c in cycles(import_graph()) if is_known(c)]

    def test_head_id_is_the_runtime_floor(self):
        """interp_core.head_id imports nothing of the engine but interp_core.errors."""
        assert import_graph()["interp_core.head_id"] <= {"interp_core.errors"}


class TestNoUiInTheEngine:
    @pytest.mark.parametrize("name", sorted(engine_modules()))
    def test_module_imports_no_streamlit_or_ui(self, name):
        """The engine runs without the app: no streamlit, no ui package, anywhere in the file."""
        path = engine_modules()[name]
        bad = {m for m in imported_names(path, name) if m.split(".")[0] in ("streamlit", "ui")}
        assert not bad, f"{name} imports {sorted(bad)}"
