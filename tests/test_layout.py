"""The program's shape, as components/__init__.py describes it: layers, and no cycle.

The import graph is read from the source (every `import` and `from ... import`, at any depth, and
`TYPE_CHECKING` imports too: a type-only import is still a dependency a reader follows).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"

# Lowest first; a module may import its own layer and the layers before it.
LAYERS = ("core", "catalog", "config", "handles", "clouds", "hosts", "cluster", "platform", "llm", "migration", "stack")
# Top-level modules of components/ besides the two layers that are modules (handles, stack): the
# shims that keep the dynamic providers' old paths importable (tests/test_dynamic_providers.py).
SHIMS = {"lambda_cloud", "fly", "backups"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _program_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(COMPONENTS.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (a `from pkg import sub` names the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "components":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "components"}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _program_modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _layer(module: str) -> str | None:
    """The layer a module belongs to; None for the package itself and the shims."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in SHIMS:
        return None
    return parts[1]


def test_components_has_only_the_layers_and_the_shims_at_the_top() -> None:
    top = {p.stem for p in COMPONENTS.glob("*.py")} - {"__init__"}
    folders = {p.name for p in COMPONENTS.iterdir() if (p / "__init__.py").exists()}
    assert top == {"handles", "stack"} | SHIMS
    assert folders | {"handles", "stack"} == set(LAYERS)


def test_every_layer_says_what_lives_there_and_what_it_may_import() -> None:
    for layer in LAYERS:
        init = COMPONENTS / layer / "__init__.py"
        if not init.exists():
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Imports:" in doc, f"components/{layer}/__init__.py needs a docstring ending in 'Imports: ...'"
        stated = set(re.findall(r"`(\w+)`", doc.split("Imports:", 1)[1])) & set(LAYERS)
        lower = set(LAYERS[: LAYERS.index(layer)])
        for module, deps in _graph().items():
            if _layer(module) == layer:
                used = {_layer(d) for d in deps} - {None, layer}
                assert used <= lower, f"{module} imports {sorted(used - lower)}, above it"
                assert used <= stated, (
                    f"{module} imports {sorted(used - stated)}; its layer's docstring does not say so"
                )


def test_imports_only_go_down_the_layers() -> None:
    wrong = [
        f"{module} ({_layer(module)}) imports {dep} ({_layer(dep)})"
        for module, deps in _graph().items()
        for dep in deps
        if _layer(module) and _layer(dep) and LAYERS.index(_layer(dep)) > LAYERS.index(_layer(module))  # type: ignore[arg-type]
    ]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
