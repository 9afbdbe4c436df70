"""The program's shape, as components/__init__.py describes it: layers, no cycle, short functions.

The graph comes from tools/import_graph.py (`python -m tools.import_graph` prints it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tools.import_graph import COMPONENTS, LAYERS, ROOT, SHIMS, cycles, layer, layer_graph, module_graph


def test_components_has_only_the_layers_and_the_shims_at_the_top() -> None:
    top = {p.stem for p in COMPONENTS.glob("*.py")} - {"__init__"}
    folders = {p.name for p in COMPONENTS.iterdir() if (p / "__init__.py").exists()}
    assert top == {"handles", "stack"} | SHIMS
    assert folders | {"handles", "stack"} == set(LAYERS)


def test_imports_only_go_down_the_layers() -> None:
    wrong = [
        f"{module} ({layer(module)}) imports {dep} ({layer(dep)})"
        for module, deps in module_graph().items()
        for dep in deps
        if (a := layer(module)) and (b := layer(dep)) and LAYERS.index(b) > LAYERS.index(a)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_layer_says_what_it_may_import_and_keeps_to_it() -> None:
    layers = layer_graph(module_graph())
    for name in LAYERS:
        init = COMPONENTS / name / "__init__.py"
        if not init.exists():  # handles and stack are single modules
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "Imports:" in doc, f"components/{name}/__init__.py needs a docstring ending in 'Imports: ...'"
        stated = set(re.findall(r"`(\w+)`", doc.split("Imports:", 1)[1])) & set(LAYERS)
        assert layers[name] <= stated, f"{name} imports {sorted(layers[name] - stated)}; its docstring omits it"


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(module_graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# The bar for the program: no function over ~80 lines without a stated reason. A function
# that must stay whole goes in LONG_FUNCTIONS with that reason; there is none today.
LIMIT = 80
LONG_FUNCTIONS: dict[str, str] = {}


def _long_functions(path: Path, root: Path = ROOT) -> dict[str, int]:
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            name = f"{path.relative_to(root)}:{node.name}"
            if length > LIMIT and name not in LONG_FUNCTIONS:
                found[name] = length
    return found


@pytest.mark.parametrize("folder", ["components", "migrate", "policy", "tools", "benchmarks"])
def test_no_function_is_longer_than_the_limit_without_a_reason(folder: str) -> None:
    paths = sorted((ROOT / folder).rglob("*.py")) + ([ROOT / "__main__.py"] if folder == "components" else [])
    long = {name: n for p in paths for name, n in _long_functions(p).items()}
    assert not long, f"over {LIMIT} lines: " + ", ".join(f"{k} ({v})" for k, v in sorted(long.items()))


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    path = tmp_path / "probe.py"
    path.write_text(f"def long() -> None:\n{body}\n\n\ndef short() -> None:\n    pass\n")
    assert _long_functions(path, tmp_path) == {"probe.py:long": LIMIT + 1}
