"""The engine's import graph: no cycles, and no UI.

Every module under ``interp_core`` is parsed with :mod:`ast` (imports anywhere in the file count,
including function-local ones and those under ``if TYPE_CHECKING:``, because a cycle hidden in a
function is still a cycle), the graph of ``interp_core`` modules is built, and any strongly
connected component with more than one module, or a module importing itself, fails. The engine
must never import Streamlit or the app's ``ui`` package (README: the engine runs without the UI).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "interp_core"

# Imports ast cannot see: cli.main's discover_commands() imports every module of interp_core.cli.commands by name.
DYNAMIC_IMPORTS: dict[str, str] = {"interp_core.cli.main": "interp_core.cli.commands."}
# The floors, lowest first: a module may import its own floor and those below, never one above.
# ``testing`` (tiny models for tests and benchmarks) stands beside the techniques: it needs the runtime only.
FLOORS: dict[str, int] = {"core": 0, "techniques": 1, "testing": 1, "cli": 2}


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


def floor_of(module: str) -> tuple[str, int] | None:
    """``("core", 0)`` for ``interp_core.core.names``; None for the package root and data."""
    parts = module.split(".")
    return (parts[1], FLOORS[parts[1]]) if len(parts) > 1 and parts[1] in FLOORS else None


class TestImportGraph:
    def test_parser_sees_function_local_imports(self, tmp_path):
        """An import inside a function body is an edge too (that is how patching <-> attribution hid)."""
        module = tmp_path / "m.py"
        module.write_text("def f():\n    from interp_core.techniques.attribution import x\n    import interp_core.core.names\n")
        assert {"interp_core.techniques.attribution", "interp_core.techniques.attribution.x", "interp_core.core.names"} <= imported_names(module, "m")

    def test_cycle_detection_finds_a_two_module_cycle(self):
        """The checker itself: a -> b -> a is a cycle, a -> b -> c is not."""
        assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [{"a", "b"}]
        assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []

    def test_graph_covers_the_engine(self):
        """Every engine module is a node, and known edges are there (the graph is not empty by mistake)."""
        graph = import_graph()
        assert {"interp_core.techniques.patching", "interp_core.techniques.attribution", "interp_core.core.head_id", "interp_core.core.arch.base"} <= set(graph)
        assert "interp_core.techniques.patch_pair" in graph["interp_core.techniques.attribution"]
        assert "interp_core.techniques.readout" in graph["interp_core.techniques.tuned_lens"]
        assert "interp_core.cli.commands.circuits" in graph["interp_core.cli.main"]  # the dynamic discovery

    def test_no_import_cycles(self):
        """No interp_core module reaches itself through imports (function-local and type-only ones included)."""
        found = [sorted(c) for c in cycles(import_graph())]
        assert not found, f"import cycles in the engine: {found}"

    def test_every_module_lives_on_a_floor(self):
        """Each engine module sits in core/, techniques/, testing/ or cli/ (the root holds only the package files)."""
        stray = [m for m in engine_modules() if floor_of(m) is None and m not in ("interp_core", "interp_core.__main__")
                 and not m.startswith("interp_core.data")]
        assert not stray, f"modules outside the floors: {stray}"

    def test_no_floor_imports_a_higher_one(self):
        """core imports no technique, CLI or test fixture; techniques import no CLI; and so on."""
        wrong = []
        for module, targets in import_graph().items():
            here = floor_of(module)
            for target in targets:
                there = floor_of(target)
                if here and there and there[0] != here[0] and there[1] >= here[1]:
                    wrong.append(f"{module} -> {target}")
        assert not wrong, "a floor imports one at or above it: " + "; ".join(sorted(wrong))

    def test_floor_check_catches_a_runtime_module_importing_a_technique(self, monkeypatch):
        """The checker itself: a made-up edge core -> techniques is reported."""
        graph = import_graph()
        graph["interp_core.core.model"] = graph["interp_core.core.model"] | {"interp_core.techniques.patching"}
        monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
        with pytest.raises(AssertionError, match="interp_core.core.model -> interp_core.techniques.patching"):
            self.test_no_floor_imports_a_higher_one()

    def test_package_root_imports_only_the_runtime(self):
        """``import interp_core`` loads the runtime floor, not every technique."""
        assert all(t.startswith("interp_core.core.") for t in import_graph()["interp_core"])

    def test_head_id_is_the_runtime_floor(self):
        """interp_core.core.head_id imports nothing of the engine but interp_core.core.errors."""
        assert import_graph()["interp_core.core.head_id"] <= {"interp_core.core.errors"}


class TestNoUiInTheEngine:
    @pytest.mark.parametrize("name", sorted(engine_modules()))
    def test_module_imports_no_streamlit_or_ui(self, name):
        """The engine runs without the app: no streamlit, no ui package, anywhere in the file."""
        path = engine_modules()[name]
        bad = {m for m in imported_names(path, name) if m.split(".")[0] in ("streamlit", "ui")}
        assert not bad, f"{name} imports {sorted(bad)}"
