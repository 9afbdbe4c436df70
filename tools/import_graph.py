"""The program's import graph, read from the source: `python -m tools.import_graph [--modules]`.

Prints one line per layer of components/ (or per module with `--modules`) and what it imports,
then any cycle. tests/test_layout.py asserts from the same functions that imports only go down
the layers of components/__init__.py and that the module graph has no cycle.

Every `import` and `from ... import` counts, at any depth and under `TYPE_CHECKING` too: a
type-only import is still a dependency a reader follows.
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"

# Lowest first; a module may import its own layer and the layers before it.
LAYERS = (
    "core",
    "catalog",
    "config",
    "handles",
    "clouds",
    "hosts",
    "cluster",
    "platform",
    "llm",
    "migration",
    "observability",
    "stack",
)
# Top-level modules of components/ that only keep the dynamic providers' old paths importable.
SHIMS = frozenset({"lambda_cloud", "fly", "backups"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def program_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(COMPONENTS.rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
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


def module_graph() -> dict[str, set[str]]:
    modules = program_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def layer(module: str) -> str | None:
    """The layer a module belongs to; None for the package itself and the shims."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in SHIMS:
        return None
    return parts[1]


def layer_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {name: set() for name in LAYERS}
    for module, deps in graph.items():
        source = layer(module)
        if source is not None:
            out[source] |= {target for d in deps if (target := layer(d)) not in (None, source)}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state[nxt] == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif state[nxt] == 0:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.import_graph", description=__doc__.split("\n")[0])
    parser.add_argument("--modules", action="store_true", help="one line per module instead of per layer")
    graph = module_graph()
    shown = graph if parser.parse_args().modules else layer_graph(graph)
    order = {name: i for i, name in enumerate(LAYERS)}
    for name, deps in shown.items():
        listed = sorted(deps, key=lambda d: (order.get(d, len(LAYERS)), d))
        print(f"{name:<12} -> {', '.join(listed) or '-'}")
    found = cycles(graph)
    for cycle in found:
        print("cycle: " + " -> ".join(cycle))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
