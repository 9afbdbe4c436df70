"""`Observability`: the dashboards and alert rules of the concerns a phase runs, in the cluster.

Dashboards are ConfigMaps that kube-prometheus-stack's Grafana sidecar loads: it watches every
namespace (grafana.sidecar.dashboards.searchNamespace ALL in the chart's values) for the label
`grafana_dashboard: "1"` (label / labelValue there) and files each dashboard in the folder named by
the annotation components/platform/charts.py configures (folderAnnotation). Alert rules are one
PrometheusRule per concern, picked up because the chart selects every rule
(ruleSelectorNilUsesHelmValues false).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, InstanceOf

from components.config.phases import AlertThresholds
from components.core.model import Args
from components.handles import ClusterHandle
from components.observability.alerts import rule_groups
from components.observability.dashboards import FOLDER, Concern, Scope, boards, dashboard_json
from components.platform.charts import DASHBOARD_FOLDER_ANNOTATION, MONITORING_NAMESPACE
from components.platform.kube import k8s_opts, labels

# kube-prometheus-stack 86.3.2 values.yaml: grafana.sidecar.dashboards.label / labelValue.
DASHBOARD_LABEL = ("grafana_dashboard", "1")


class ObservabilityArgs(Args):
    cluster: InstanceOf[ClusterHandle]
    concerns: tuple[Concern, ...]
    thresholds: AlertThresholds
    scope: Scope
    expected_gpus: int = Field(default=1, ge=1)  # GPUs on the K3s nodes: fewer reporting is an alert
    # The monitoring release: its CRDs (PrometheusRule) and the sidecar must exist first.
    depends_on: Sequence[InstanceOf[pulumi.Resource]] = ()


class Observability(pulumi.ComponentResource):
    """One dashboard ConfigMap and one PrometheusRule per concern."""

    dashboards: list[str]  # the dashboards' uids
    rules: list[str]  # the PrometheusRules' names

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:shipping:Observability", name, None, opts)
        self.dashboards, self.rules = [], []
        deps = list(args.depends_on)
        for board in boards(args.concerns, args.thresholds, args.scope):
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{board.concern}",
                metadata={
                    "name": board.uid,
                    "namespace": MONITORING_NAMESPACE,
                    "labels": {**labels(board.uid, "dashboard"), DASHBOARD_LABEL[0]: DASHBOARD_LABEL[1]},
                    "annotations": {DASHBOARD_FOLDER_ANNOTATION: FOLDER},
                },
                data={f"{board.uid}.json": dashboard_json(board)},
                opts=k8s_opts(self, args.cluster, depends_on=deps),
            )
            self.dashboards.append(board.uid)
        for concern in args.concerns:
            rule_name = f"gpu-platform-{concern}"
            k8s.apiextensions.CustomResource(
                f"{name}-rules-{concern}",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={"name": rule_name, "namespace": MONITORING_NAMESPACE, "labels": labels(rule_name, "alerts")},
                spec={"groups": rule_groups(concern, args.thresholds, args.scope, args.expected_gpus)},
                opts=k8s_opts(self, args.cluster, depends_on=deps),
            )
            self.rules.append(rule_name)
        self.register_outputs({"dashboards": self.dashboards, "alertRules": self.rules})
