"""Wiring: which components a phase builds, in dependency order, and what the stack exports.

`build` is a short sequence of steps, one per area. Each step reads the typed config, the phase's
state and the immutable results of the steps before it, and returns its own: the handles a later
step needs and the stack outputs of its area. Nothing is added to a result after it is returned, so
what a step depends on is exactly what it is given.

    refusals    everything the phase can refuse, before the first resource
    estate      the backup bucket, verified dumps, the Fly apps (components/migration/)
    hosts       GPU hosts, their access and K3s peer rules (components/hosts/)
    cluster     K3s and NVIDIA's device plugin (components/cluster/)
    platform    charts, data stores, services, traffic (components/platform/)
    pushgateway where the scheduled backups report (components/platform/pushgateway.py)
    brain       the llama servers and the router (components/llm/)
    watch       dashboards and alert rules of what the phase runs (components/observability/)
    legacy      the legacy VM and Compose host, last (components/migration/legacy.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.cluster.k3s import K3sCluster, K3sClusterArgs, K3sSettings
from components.cluster.nvidia import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.config.cost_basis import cost_basis
from components.config.load import Loaded, Secrets
from components.config.phases import Phase, PhaseState, alert_thresholds
from components.config.schema import StackConfig
from components.core.errors import ConfigError
from components.handles import BackupHandle, ClusterHandle, HostHandle, SshTarget, VerifiedBackup
from components.hosts.access import HostAccess, HostAccessArgs
from components.hosts.gpu_host import GpuHost, GpuHostArgs
from components.hosts.peers import ClusterPeers, ClusterPeersArgs, PeerNode
from components.llm.llama import WORKSTATION_SERVICE, build_local_brain, workstation_metrics_target
from components.migration.backups import Backups, BackupsArgs, ComposeSource
from components.migration.fly import FlyApps, FlyAppsArgs, check_decommission
from components.migration.legacy import LegacyEstate, LegacyEstateArgs
from components.observability import series
from components.observability.dashboards import Scope, concerns_for
from components.observability.shipping import Observability, ObservabilityArgs
from components.platform.datastores import STORAGE_CLASS, BucketTarget
from components.platform.platform import DATA_NAMESPACE, MONITORING_NAMESPACE, Platform, PlatformArgs, PlatformSecrets
from components.platform.platform import NAMESPACE as PLATFORM_NAMESPACE
from components.platform.pushgateway import Pushgateway, PushgatewayArgs
from components.platform.scheduled_backups import (
    PREFIX,
    ScheduledBackups,
    ScheduledBackupsArgs,
    check_schedule,
)

Outputs = dict[str, Any]


def build(loaded: Loaded, phase: Phase) -> Outputs:
    """Create the resources `phase` enables; return the stack outputs."""
    cfg, secrets, state = loaded.config, loaded.secrets, phase.state
    legacy_args = refusals(cfg, secrets, phase)
    estate = backups_and_fly(cfg, secrets, phase, legacy_args.compose_ssh)
    hosts = gpu_hosts(cfg, secrets, state)
    cluster = k3s(cfg, state, hosts.handles)
    platform = platform_on_k3s(cfg, secrets, state, phase_id=phase.id, cluster=cluster.handle, backups=estate.backups)
    pushgateway(cfg, state, cluster=cluster.handle, platform=platform.component)
    brain = local_brain(cfg, secrets, state, cluster=cluster.handle, hosts=hosts.handles, platform=platform.component)
    watch = observability(cfg, phase, cluster=cluster.handle, platform=platform.component)
    legacy = legacy_estate(legacy_args, state, estate.backups, platform.component)
    return {
        "phase": phase.id,
        "environment": cfg.environment,
        "exitChecks": list(phase.exit_criteria.checks),
        "costBasis": cost_basis(cfg),  # issue 24: what the policy pack's budget rule prices the plan with
        **estate.outputs,
        **hosts.outputs,
        **cluster.outputs,
        **platform.outputs,
        **brain,
        **watch,
        **legacy,
    }


# --- refusals ------------------------------------------------------------------------------------


def refusals(cfg: StackConfig, secrets: Secrets, phase: Phase) -> LegacyEstateArgs:
    """Everything the phase can refuse, before its first resource; the legacy estate's Args.

    A backup schedule that would set off BackupTooOld on its own (platform.servicesStateful on); a
    p4 that would destroy a Fly app without flyAllowDestroy; the Compose host's login key missing
    from the phase that dumps its data or stops it.
    """
    state = phase.state
    check_decommission(cfg.fly_apps, cfg.fly_allow_destroy, state.legacy.fly_apps, phase.id)
    if state.platform.services_stateful:
        check_schedule(cfg.backups.every_hours, cfg.backups.job_deadline_minutes, phase.alerts.max_backup_age)
    compose_ssh: SshTarget | None = None
    if state.backups.compose_data or state.legacy.compose == "stopped":
        if secrets.compose_ssh_private_key is None:
            raise ConfigError(
                f"gpu-platform:composeSshPrivateKey: required from the phase that dumps the Compose host's data "
                f"on (this is {phase.id}); set it with `pulumi config set --secret gpu-platform:composeSshPrivateKey`"
            )
        compose_ssh = SshTarget(
            host=cfg.compose_host.address,
            user=cfg.compose_host.ssh_user,
            host_key=cfg.compose_host.host_key,
            private_key=secrets.compose_ssh_private_key,
        )
    return LegacyEstateArgs(
        environment=cfg.environment,
        gcp_vm=cfg.gcp_vm,
        gcp_vm_state=state.legacy.gcp_vm,
        compose_state=state.legacy.compose,
        compose_dir=cfg.compose_host.compose_dir,
        compose_ssh=compose_ssh,
    )


# --- backups and the Fly apps --------------------------------------------------------------------


@dataclass(frozen=True)
class Estate:
    # What the platform's restore Jobs consume: verified["qdrant" | "redis" | "postgres"] (p2b on),
    # plus verified["fly-<app>"] for each Fly app (p1 on).
    backups: BackupHandle
    outputs: Outputs


def backups_and_fly(cfg: StackConfig, secrets: Secrets, phase: Phase, compose_ssh: SshTarget | None) -> Estate:
    """p0 on: the bucket. p1 on: verified Fly exports. p2b on: verified dumps of the Compose data."""
    state = phase.state
    compose = state.backups.compose_data and compose_ssh is not None
    backups = Backups(
        "backups",
        BackupsArgs(
            environment=cfg.environment,
            config=cfg.backups,
            gcp_project=cfg.gcp_vm.project,
            access_key_id=secrets.backup_access_key_id,
            secret_access_key=secrets.backup_secret_access_key,
            compose=ComposeSource(ssh=compose_ssh, host=cfg.compose_host) if compose and compose_ssh else None,
            k3s_backups=state.platform.services_stateful,
        ),
    )
    fly_apps = FlyApps(
        "fly",
        FlyAppsArgs(
            org=cfg.fly_org,
            apps=cfg.fly_apps,
            allow_destroy=cfg.fly_allow_destroy,
            apps_state=state.legacy.fly_apps,
            snapshots=state.fly.snapshots,
            phase_id=phase.id,
            token=secrets.fly_api_token,
            target=backups.target,
            snapshot_retention_days=cfg.backups.fly_snapshot_retention_days,
        ),
    )
    handle = backups.handle(extra=fly_apps.verified)
    outputs: Outputs = {
        "backupBucket": handle.bucket,
        "verifiedBackups": {name: vb.key for name, vb in handle.verified.items()},
        # What the `backups-verified` exit check re-reads and compares (migrate/checks.py): every
        # object of every verified backup, a Fly app's volume archives as well as its manifest.
        "backupObjects": pulumi.Output.all(*[_named_objects(name, vb) for name, vb in handle.verified.items()]).apply(
            lambda groups: [obj for group in groups for obj in group]
        ),
    }
    return Estate(backups=handle, outputs=outputs)


def _named_objects(name: str, backup: VerifiedBackup) -> pulumi.Output[list[dict[str, Any]]]:
    return backup.objects.apply(lambda objs: [{"name": name, **obj} for obj in objs])


# --- GPU hosts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hosts:
    # Host name -> handle. A K3s node's handle already waits on its peer rules; steps on a host wait
    # on `handle.ready` (instance, firewalls, first-boot check, peer rules).
    handles: Mapping[str, HostHandle] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=dict)


def gpu_hosts(cfg: StackConfig, secrets: Secrets, state: PhaseState) -> Hosts:
    """K3s nodes (role server/agent) from k3s.gpuHosts on; the workstation from k3s.gpuHosts or
    llama.workstation, whichever comes first.

    The workstation is static (nothing is created for it): its pinned host key and the admin public
    key it must trust are then in the stack outputs one phase before the llama step first logs in.
    """
    wanted = [
        h
        for h in cfg.hosts
        if (h.is_k3s_node and state.k3s.gpu_hosts)
        or (h.role == "workstation" and (state.k3s.gpu_hosts or state.llama.workstation))
    ]
    if not wanted:
        return Hosts()
    prefix = f"{pulumi.get_project()}-{pulumi.get_stack()}"
    lambda_regions = tuple(c.region for h in wanted if h.lambda_ is not None for c in h.lambda_.candidates)
    access = HostAccess(
        "hosts",
        HostAccessArgs(
            resource_prefix=prefix,
            admin_cidrs=cfg.admin_cidrs,
            lambda_regions=lambda_regions,
            lambda_api_key=secrets.lambda_api_key if lambda_regions else None,
        ),
    )
    machines = {
        h.name: GpuHost(h.name, GpuHostArgs(host=h, resource_prefix=prefix, access=access.handle, protect=cfg.is_prod))
        for h in wanted
    }
    handles = {name: gh.handle for name, gh in machines.items()}
    nodes = [PeerNode(gh.handle, gh.gcp_target) for gh in machines.values() if gh.handle.role != "workstation"]
    if nodes:
        peers = ClusterPeers("k3s-peers", ClusterPeersArgs(nodes=tuple(nodes), access=access.handle))
        handles.update(peers.nodes)
    outputs: Outputs = {
        "adminPublicKey": access.admin_public_key,
        # Secret: `pulumi stack output adminPrivateKey --show-secrets` for an operator's own SSH.
        "adminPrivateKey": access.admin_private_key,
        "hosts": {name: _host_output(gh) for name, gh in machines.items()},
    }
    return Hosts(handles=handles, outputs=outputs)


def _host_output(gh: GpuHost) -> dict[str, Any]:
    return {
        "role": gh.handle.role,
        "source": gh.handle.source,
        "address": gh.address,
        "privateAddress": gh.private_address,
        "sshUser": gh.ssh_user,
        "hostKey": gh.host_public_key,
        "gpu": {"model": gh.gpu_model, "count": gh.gpu_count},
    }


# --- K3s and NVIDIA ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    # For every in-cluster step: its provider, and `deleted_with=handle.cluster`. None before k3s.cluster.
    handle: ClusterHandle | None = None
    outputs: Outputs = field(default_factory=dict)


def k3s(cfg: StackConfig, state: PhaseState, hosts: Mapping[str, HostHandle]) -> Cluster:
    """From k3s.cluster on: K3s on the server/agent hosts (servers one at a time, then the agents in
    parallel) and the admin kubeconfig as a secret output. From k3s.devicePlugin: NVIDIA's device
    plugin; GPU time-slicing from k3s.timeSlicing with gpuTimeSlicingReplicas pods per GPU (1 = no
    sharing)."""
    if not state.k3s.cluster:
        return Cluster()
    cluster = K3sCluster(
        "k3s",
        K3sClusterArgs(
            hosts=tuple(h for h in hosts.values() if h.role in ("server", "agent")),
            settings=K3sSettings(version=cfg.k3s_version, cluster_cidr=cfg.cluster_cidr, service_cidr=cfg.service_cidr),
        ),
    )
    outputs: Outputs = {
        "kubeconfig": cluster.kubeconfig,  # secret
        "k3sApiUrl": cluster.api_url,
        "k3sNodes": cluster.node_names,
        "gpuNodes": cluster.gpu_nodes,
    }
    if state.k3s.device_plugin:
        plugin = NvidiaDevicePlugin(
            "nvidia",
            NvidiaDevicePluginArgs(
                cluster=cluster.handle, time_slicing=state.k3s.time_slicing, replicas=cfg.gpu_time_slicing_replicas
            ),
        )
        outputs["gpuSharesPerGpu"] = plugin.replicas_per_gpu
    return Cluster(handle=cluster.handle, outputs=outputs)


# --- the platform on K3s -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformStep:
    component: Platform | None = None
    outputs: Outputs = field(default_factory=dict)


def platform_on_k3s(
    cfg: StackConfig,
    secrets: Secrets,
    state: PhaseState,
    *,
    phase_id: str,
    cluster: ClusterHandle | None,
    backups: BackupHandle,
) -> PlatformStep:
    """Charts, data stores, services and the traffic split, as far as the phase enables them.

    Rollback safety: resources that hold data (the Qdrant, Redis and Postgres StatefulSets, and any
    standalone PVC) are created as soon as state.k3s.cluster and state.platform.retain_storage are
    on (p2a), not when the services phase turns on: replicas 0 until
    state.platform.services_stateful, then the real count. They carry protect + retain_on_delete in
    prod from creation. Rolling back p2b -> p2a is then an update (replicas, restore Jobs, routes),
    never a delete of a protected resource; only tearing the cluster down (p2a -> p1) removes them,
    which prod refuses by design. Restore Jobs: namespace platform-data, label selector
    gpu-platform/restore=true (the `restore-jobs-complete` check); public routes: app.<domain> and
    api.<domain>.
    """
    wanted = any(state.platform.model_dump().values())
    if cluster is None:
        if wanted:
            raise ConfigError(f"{phase_id}: platform components need k3s.cluster")
        return PlatformStep()
    if not (wanted or state.traffic.k3s_weight):
        return PlatformStep()
    platform = Platform(
        "platform",
        PlatformArgs(
            config=cfg,
            state=state.platform,
            k3s_weight=state.traffic.k3s_weight,
            cluster=cluster,
            backups=backups if state.platform.restore_from_backup else None,
            gpu_telemetry=state.k3s.device_plugin,
            secrets=PlatformSecrets(
                lambda_api_key=secrets.lambda_api_key,
                github_token=secrets.github_token,
                hubspot_access_token=secrets.hubspot_access_token,
                llm_api_key=secrets.cloud_llm_api_key,
                backup_access_key_id=secrets.backup_access_key_id,
                backup_secret_access_key=secrets.backup_secret_access_key,
            ),
        ),
    )
    outputs: Outputs = {"platform": platform.outputs}
    if state.platform.services_stateful:
        outputs["scheduledBackups"] = scheduled_backups(cfg, secrets, cluster, backups, platform, phase_id=phase_id)
    return PlatformStep(component=platform, outputs=outputs)


def scheduled_backups(
    cfg: StackConfig,
    secrets: Secrets,
    cluster: ClusterHandle,
    backups: BackupHandle,
    platform: Platform,
    *,
    phase_id: str,
) -> Outputs:
    """From platform.servicesStateful on: a CronJob per store (components/platform/scheduled_backups.py)
    that writes a verified backup under k3s/ in the backup bucket; rolled back, they go and their
    objects stay. The schedule was checked against alerts.maxBackupAge in `refusals`."""
    # PlatformArgs refused a stack without the bucket's keys before the Platform existed.
    assert secrets.backup_access_key_id is not None and secrets.backup_secret_access_key is not None
    job = ScheduledBackups(
        "scheduled-backups",
        ScheduledBackupsArgs(
            cluster=cluster,
            namespace=DATA_NAMESPACE,
            monitoring_namespace=MONITORING_NAMESPACE,
            target=BucketTarget(
                bucket=backups.bucket,
                endpoint=backups.endpoint,
                region=backups.region,
                access_key_id=secrets.backup_access_key_id,
                secret_access_key=secrets.backup_secret_access_key,
            ),
            every_hours=cfg.backups.every_hours,
            job_deadline_minutes=cfg.backups.job_deadline_minutes,
            max_backup_age=alert_thresholds(phase_id).settings.max_backup_age,
            depends_on=platform.data_stores,
        ),
    )
    return {"schedule": job.schedule, "bucketPrefix": f"{PREFIX}/", "cronJobs": sorted(job.cron_jobs)}


# --- the Pushgateway ----------------------------------------------------------------------------


def pushgateway(
    cfg: StackConfig, state: PhaseState, *, cluster: ClusterHandle | None, platform: Platform | None
) -> None:
    """Where the stores' scheduled backups report, in the monitoring namespace: from the phase with
    monitoring and the Retain storage (p2a) so that its claim outlives a rollback, serving once the
    stores run (p2b). Nothing later needs a handle: the Jobs push to push_url(MONITORING_NAMESPACE)."""
    if cluster is None or platform is None or not (state.platform.monitoring and state.platform.retain_storage):
        return
    Pushgateway(
        "pushgateway",
        PushgatewayArgs(
            cluster=cluster,
            namespace=MONITORING_NAMESPACE,
            storage_class=STORAGE_CLASS,
            serving=state.platform.services_stateful,
            protect=cfg.is_prod,
            depends_on=list(platform.foundations),
        ),
    )


# --- the local brain -----------------------------------------------------------------------------


def local_brain(
    cfg: StackConfig,
    secrets: Secrets,
    state: PhaseState,
    *,
    cluster: ClusterHandle | None,
    hosts: Mapping[str, HostHandle],
    platform: Platform | None,
) -> Outputs:
    """The llama servers and the router; their stack outputs.

    The model PVC follows the data stores' rule: it exists from the moment the cluster and retain
    storage exist (p2a), protect + retain_on_delete in prod, so rolling back p3 -> p2c removes the
    Deployment/Service/router but never the downloaded weights. llama.workstation: the container on
    the workstation (Docker over SSH, host key pinned); llama.cluster: the server on the GPU nodes
    the sizing chose; llama.router: LiteLLM, local first, cloud fallback only for
    router.fallbackAliases. Sizing was checked when the config was loaded.
    """
    return build_local_brain(
        cfg,
        secrets,
        state.llama,
        cluster=cluster,
        workstation=hosts.get(cfg.workstation.name) if cfg.workstation else None,
        storage_class=STORAGE_CLASS if cluster is not None and state.platform.retain_storage else None,
        # kube-prometheus-stack here selects every ServiceMonitor (components/platform/charts.py
        # sets serviceMonitorSelectorNilUsesHelmValues false): no extra labels needed.
        monitor_labels={} if state.platform.monitoring else None,
        monitoring_namespace=MONITORING_NAMESPACE if state.platform.monitoring else None,
        # The platform's services call the router.
        client_namespaces=(PLATFORM_NAMESPACE,),
        depends_on=list(platform.foundations) if platform is not None else [],
    )


# --- dashboards and alerts ---------------------------------------------------------------------


def observability(
    cfg: StackConfig, phase: Phase, *, cluster: ClusterHandle | None, platform: Platform | None
) -> Outputs:
    """The dashboards and alert rules of the concerns the phase runs (concerns_for), after the
    monitoring chart whose sidecar and CRDs they need; their names as a stack output."""
    concerns = concerns_for(phase.state)
    if not concerns or cluster is None or platform is None:
        return {}
    # The workstation's server is watched like the cluster's wherever Prometheus scrapes it.
    scraped = workstation_metrics_target(cfg, phase.state.llama, monitoring=phase.state.platform.monitoring)
    llama_services = (series.JOB_LLAMA, WORKSTATION_SERVICE) if scraped else (series.JOB_LLAMA,)
    watch = Observability(
        "observability",
        ObservabilityArgs(
            cluster=cluster,
            concerns=concerns,
            thresholds=alert_thresholds(phase.id),
            scope=Scope(
                platform_namespace=PLATFORM_NAMESPACE,
                data_namespace=DATA_NAMESPACE,
                local_groups=tuple(cfg.router.local_aliases),
                llama_services=llama_services,
            ),
            expected_gpus=max(1, sum(g.count for h in cfg.hosts if h.is_k3s_node and (g := h.gpu_spec))),
            depends_on=list(platform.foundations),
        ),
    )
    return {"observability": {"dashboards": watch.dashboards, "alertRules": watch.rules}}


# --- the legacy estate ---------------------------------------------------------------------------


def legacy_estate(
    args: LegacyEstateArgs, state: PhaseState, backups: BackupHandle, platform: Platform | None
) -> Outputs:
    """Last, so that stopping the Compose services can wait for what the steps above produced: the
    verified dumps and the whole Platform component (its restore Jobs complete with it)."""
    stop_after: list[Any] = []
    if state.legacy.compose == "stopped":
        stop_after = [backups.verified[s].resource for s in ("qdrant", "redis", "postgres")]
        if platform is not None:
            stop_after.append(platform)
    legacy = LegacyEstate("legacy", args.model_copy(update={"compose_stop_after": stop_after}))
    return {"legacyVm": legacy.vm_self_link}
