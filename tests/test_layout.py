"""The program's shape, as components/__init__.py describes it: layers, and no cycle.

The graph comes from tools/import_graph.py (`python -m tools.import_graph` prints it).
"""

from __future__ import annotations

import ast
import re

from tools.import_graph import COMPONENTS, LAYERS, SHIMS, cycles, layer, layer_graph, module_graph


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
