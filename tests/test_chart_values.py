"""Every value the program gives a chart, checked against that chart's own files at the pinned version.

The values come from the recorded plans of every phase of both stacks: the Helm releases' `values`
and the `valuesContent` of the HelmChartConfig that configures K3s's bundled Traefik. The charts'
files come from the cache `make upstream` verifies against tools/upstream.lock. A value path
is accepted when

1. the chart's values.yaml has it, with a value of the same type (null defaults take anything), or
2. the chart's values.schema.json declares it, or
3. the chart's templates read it (`.Values.a.b`), or a Chart.yaml dependency is conditioned on it, or
4. it lies under one of the maps listed in VERBATIM, which the chart renders as they are (toYaml),
   so what they may hold is the rendered program's business (Loki's config, the plugin's config).

Values for a subchart (kube-prometheus-stack's `grafana:`) are checked against the subchart too.
Independently, the whole values document, merged over values.yaml the way Helm merges it, must
pass the chart's values.schema.json where the chart has one.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

from components.catalog import versions
from components.config.phases import phase_ids
from migrate.manifests import manifest, normalise
from tests.conftest import STACKS, recorded, upstream_root
from tools.upstream import pinned_charts

Path_ = tuple[str, ...]

# Maps a chart renders verbatim, per chart: what may sit under them is not the chart's to say.
VERBATIM: dict[str, tuple[Path_, ...]] = {
    # Rendered as the keys of the plugin's ConfigMap, and onto the DaemonSet as its nodeSelector.
    "nvidia-device-plugin": (("config", "map"), ("nodeSelector",)),
    # Rendered onto the DaemonSet as its nodeSelector (`toYaml .Values.nodeSelector`).
    "dcgm-exporter": (("nodeSelector",),),
    # Sections of Loki's own config file (`toYaml .Values.loki.<section>` in the chart's loki.config
    # template); what they hold is Loki's configuration reference's business, not the chart's.
    "loki": (("loki", "limits_config"), ("loki", "compactor"), ("loki", "schemaConfig")),
}
# Maps whose keys the templates read relative to the map (`with .x.y` ... `.key`), which the
# `.Values.a.b` search cannot see: chart -> {map path ("*" = any key): the keys read}. Each key is
# checked to occur in the chart's templates (test_relative_reads_are_in_the_templates).
RELATIVE_READS: dict[str, dict[Path_, tuple[str, ...]]] = {
    # _podtemplate.tpl: `with (.redirections).entryPoint` -> .to, .scheme, .priority, .permanent
    "traefik": {("ports", "*", "http", "redirections", "entryPoint"): ("to", "scheme", "priority", "permanent")},
}
# Parent chart -> the values keys that belong to a subchart (its values.yaml and templates).
SUBCHART_KEYS: dict[str, tuple[str, ...]] = {"kube-prometheus-stack": ("grafana",)}
_VALUES_READ = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@dataclass
class Chart:
    name: str
    version: str
    defaults: dict[str, Any]
    schema: dict[str, Any] | None
    reads: frozenset[Path_]  # every `.Values.x.y` path its templates read, with its prefixes
    conditions: frozenset[Path_]  # dependency conditions in Chart.yaml
    subcharts: dict[str, Chart] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.name} {self.version}"


@functools.cache
def chart(name: str, version: str) -> Chart:
    folder = upstream_root() / "charts" / f"{name}-{version}"
    meta = yaml.safe_load((folder / "Chart.yaml").read_text())
    schema_file = folder / "values.schema.json"
    reads: set[Path_] = set()
    for template in (folder / "templates").rglob("*"):
        if template.is_file():
            for match in _VALUES_READ.finditer(template.read_text(errors="replace")):
                parts = tuple(match.group(1).strip(".").split("."))
                reads.update(parts[:i] for i in range(1, len(parts) + 1))
    conditions = {
        tuple(cond.strip().split("."))
        for dep in meta.get("dependencies") or []
        for cond in str(dep.get("condition", "")).split(",")
        if cond.strip()
    }
    found = Chart(
        name=name,
        version=version,
        defaults=yaml.safe_load((folder / "values.yaml").read_text()) or {},
        schema=json.loads(schema_file.read_text()) if schema_file.is_file() else None,
        reads=frozenset(reads),
        conditions=frozenset(conditions),
    )
    deps = {d.get("alias") or d["name"]: str(d["version"]) for d in meta.get("dependencies") or []}
    for key in SUBCHART_KEYS.get(name, ()):
        found.subcharts[key] = chart(key, deps[key])
    return found


# --- the checks --------------------------------------------------------------------------------


def _leaves(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every leaf of a values document; lists and empty maps are leaves (the chart takes them whole)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    else:
        yield path, value


_MISSING = object()


def _default(values: Any, path: Path_) -> Any:
    node = values
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "map"}.get(type(value), type(value).__name__)


def _resolve(schema: Any, root: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema node and the alternatives it combines ($ref, allOf, anyOf, oneOf), flattened."""
    if not isinstance(schema, dict):
        return []
    out = [schema]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        out += _resolve(node, root)
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combinator, []):
            out += _resolve(sub, root)
    return out


def _schema_declares(schema: dict[str, Any], path: Path_) -> bool:
    """Whether the schema names `path`: properties, patternProperties or an additionalProperties schema."""
    nodes = _resolve(schema, schema)
    for part in path:
        nxt: list[dict[str, Any]] = []
        for node in nodes:
            if part in node.get("properties", {}):
                nxt += _resolve(node["properties"][part], schema)
            for pattern, sub in node.get("patternProperties", {}).items():
                if re.search(pattern, part):
                    nxt += _resolve(sub, schema)
            if isinstance(node.get("additionalProperties"), dict):
                nxt += _resolve(node["additionalProperties"], schema)
        if not nxt:
            return False
        nodes = nxt
    return True


def _matches(path: Path_, pattern: Path_) -> bool:
    return len(path) == len(pattern) and all(p in ("*", k) for k, p in zip(path, pattern, strict=True))


def _known(c: Chart, path: Path_, value: Any) -> str | None:
    """None when `c` knows `path`; otherwise why not."""
    default = _default(c.defaults, path)
    if default is not _MISSING:
        if default is None or value is None or _kind(default) == _kind(value):
            return None
        return f"is a {_kind(value)}; {c.where}'s values.yaml has a {_kind(default)} there ({default!r:.60})"
    if c.schema is not None and _schema_declares(c.schema, path):
        return None
    if path in c.reads or path in c.conditions:
        return None
    if any(path[: len(v)] == v and len(path) > len(v) for v in VERBATIM.get(c.name, ())):
        return None
    for where, keys in RELATIVE_READS.get(c.name, {}).items():
        if _matches(path[:-1], where) and path[-1] in keys:
            return None
    if path[0] in c.subcharts and _known(c.subcharts[path[0]], path[1:], value) is None:
        return None
    return f"is neither in {c.where}'s values.yaml or values.schema.json nor read by its templates"


def _merged(defaults: Any, values: Any) -> Any:
    """Helm's coalescing: the user's maps merge into the chart's, anything else replaces; null deletes."""
    if isinstance(defaults, dict) and isinstance(values, dict):
        out = dict(defaults)
        for key, item in values.items():
            if item is None:
                out.pop(key, None)
            else:
                out[key] = _merged(defaults.get(key), item)
        return out
    return values


def _schema_problems(c: Chart, values: dict[str, Any]) -> list[str]:
    if c.schema is None:
        return []
    cls = jsonschema.validators.validator_for(c.schema, default=jsonschema.Draft7Validator)
    registry: referencing.Registry[Any] = referencing.Registry()
    validator = cls(c.schema, registry=registry)
    return [
        f"{c.where} values.schema.json: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(_merged(c.defaults, values))
    ]


def problems(name: str, version: str, values: dict[str, Any]) -> list[str]:
    """Every reason the pinned chart would reject or ignore `values`."""
    c = chart(name, version)
    values = normalise(values)  # numbers arrive as doubles; Helm decodes 1.0 as 1
    out = [f"{'.'.join(p)}: {why}" for p, v in _leaves(values) if (why := _known(c, p, v))]
    return out + _schema_problems(c, values)


# --- what the program gives the charts ---------------------------------------------------------


@functools.cache
def given_values() -> dict[str, tuple[str, str, str, dict[str, Any]]]:
    """Unique (chart, version, values) of every phase of both stacks: JSON text -> (where, chart, version, values)."""
    out: dict[str, tuple[str, str, str, dict[str, Any]]] = {}
    for stack in STACKS:
        for phase in phase_ids():
            for res in recorded(stack, phase).resources:
                if res.type == "kubernetes:helm.sh/v3:Release":
                    name, version, values = res.inputs["chart"], res.inputs["version"], res.inputs["values"]
                elif res.type == "kubernetes:helm.cattle.io/v1:HelmChartConfig":
                    obj = manifest(res)
                    name, version = obj["metadata"]["name"], versions.K3S_TRAEFIK_CHART_VERSION
                    values = yaml.safe_load(obj["spec"]["valuesContent"])
                else:
                    continue
                key = json.dumps([name, version, values], sort_keys=True)
                out.setdefault(key, (f"{stack}/{phase}: {res.name}", name, version, values))
    return out


def test_every_chart_the_program_installs_or_configures_is_at_its_pin() -> None:
    charts = {(name, version) for _, name, version, _ in given_values().values()}
    assert charts == set(pinned_charts().items())


def test_every_value_path_of_every_phase_is_one_the_chart_knows() -> None:
    found = given_values()
    assert len({name for _, name, _, _ in found.values()}) == 7, "six releases and K3s's Traefik"
    failures = {where: p for where, name, version, values in found.values() if (p := problems(name, version, values))}
    assert not failures, "\n".join(f"{where}:\n  " + "\n  ".join(p) for where, p in sorted(failures.items()))


# --- the checks reject what the charts would -----------------------------------------------------


def _values_of(chart_name: str) -> dict[str, Any]:
    for _, name, _, values in given_values().values():
        if name == chart_name:
            return json.loads(json.dumps(values))
    raise KeyError(chart_name)


@pytest.mark.parametrize(
    ("chart_name", "change", "expected"),
    [
        # Traefik's redirect before chart v39: the schema rejects it (the original bug).
        ("traefik", {"ports": {"web": {"redirections": {"entryPoint": {"to": "websecure"}}}}}, "redirections"),
        ("traefik", {"logs": {"access": {"enabled": "yes"}}}, "is a string"),
        ("cert-manager", {"crds": {"enabeld": True}}, "enabeld"),  # the chart's schema allows no unknown key
        ("kube-prometheus-stack", {"prometheus": {"prometheusSpec": {"retentionn": "7d"}}}, "retentionn"),
        ("kube-prometheus-stack", {"grafana": {"admin": {"existingSecrett": "x"}}}, "existingSecrett"),
        ("loki", {"singleBinary": {"replicas": "one"}}, "singleBinary.replicas"),
        ("loki", {"loki": {"compactorr": {"retention_enabled": True}}}, "compactorr"),
        ("alloy", {"controller": {"tpye": "deployment"}}, "controller.tpye"),
        ("nvidia-device-plugin", {"runtimeClass": "nvidia"}, "runtimeClass"),
        ("nvidia-device-plugin", {"gfd": {"enabled": "false"}}, "gfd.enabled"),
        ("dcgm-exporter", {"serviceMonitor": {"honorLabel": True}}, "serviceMonitor.honorLabel"),
        ("dcgm-exporter", {"runtimeClassName": False}, "runtimeClassName: is a boolean"),
        (
            "kube-prometheus-stack",
            {"grafana": {"sidecar": {"dashboards": {"folderAnnotations": "x"}}}},
            "folderAnnotations",
        ),
    ],
)
def test_a_wrong_key_or_type_fails(chart_name: str, change: dict[str, Any], expected: str) -> None:
    version = pinned_charts()[chart_name]
    values = _merged(_values_of(chart_name), change)
    assert problems(chart_name, version, _values_of(chart_name)) == []
    found = problems(chart_name, version, values)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize("chart_name", sorted(RELATIVE_READS))
def test_relative_reads_are_in_the_templates(chart_name: str) -> None:
    folder = upstream_root() / "charts" / f"{chart_name}-{pinned_charts()[chart_name]}" / "templates"
    text = "\n".join(f.read_text() for f in folder.rglob("*") if f.is_file())
    for where, keys in RELATIVE_READS[chart_name].items():
        assert f".{where[-1]}" in text, where
        for key in keys:
            assert re.search(rf"\.{key}\b", text), f"{chart_name} templates read no .{key} (under {where})"


def test_the_template_reads_include_helpers_and_subcharts() -> None:
    kps = chart("kube-prometheus-stack", versions.KUBE_PROMETHEUS_STACK_CHART[2])
    assert ("grafana", "additionalDataSources") in kps.reads
    assert ("admin", "existingSecret") in kps.subcharts["grafana"].reads
    plugin = chart(versions.NVIDIA_DEVICE_PLUGIN_CHART, versions.NVIDIA_DEVICE_PLUGIN_VERSION)
    assert ("gfd", "enabled") in plugin.conditions | plugin.reads


def test_the_upstream_root_holds_the_pinned_versions() -> None:
    root: Path = upstream_root()
    for name, version in pinned_charts().items():
        meta = yaml.safe_load((root / "charts" / f"{name}-{version}" / "Chart.yaml").read_text())
        # The version is in the folder's name: some repositories stamp Chart.yaml only when packaging.
        assert meta["name"] == name
