"""Wiring: which components a phase builds, in dependency order, and what the stack exports.

Each block below belongs to one component module. A block reads only the phase state, the typed
config and the handles earlier blocks produced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from components.config.load import Loaded
from components.config.phases import Phase
from components.core.errors import ConfigError
from components.handles import VerifiedBackup

if TYPE_CHECKING:
    from components.platform.platform import Platform


def build(loaded: Loaded, phase: Phase) -> dict[str, Any]:
    """Create the resources `phase` enables; return the stack outputs."""
    cfg, state = loaded.config, phase.state
    outputs: dict[str, Any] = {
        "phase": phase.id,
        "environment": cfg.environment,
        "exitChecks": list(phase.exit_criteria.checks),
    }

    # --- backups and the legacy estate (components/migration/backups.py, components/migration/fly.py) -------------
    # Everything this area can refuse is decided here, before its first resource: a p4 that would
    # destroy a Fly app without flyAllowDestroy, missing bucket keys or Compose host login key.
    from components.handles import SshTarget
    from components.migration.backups import Backups, BackupsArgs, ComposeSource
    from components.migration.fly import FlyApps, FlyAppsArgs, check_decommission
    from components.migration.legacy import LegacyEstate, LegacyEstateArgs

    check_decommission(cfg.fly_apps, cfg.fly_allow_destroy, state.legacy.fly_apps, phase.id)
    secrets = loaded.secrets
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
    backups_args = BackupsArgs(
        environment=cfg.environment,
        config=cfg.backups,
        gcp_project=cfg.gcp_vm.project,
        access_key_id=secrets.backup_access_key_id,
        secret_access_key=secrets.backup_secret_access_key,
        compose=ComposeSource(ssh=compose_ssh, host=cfg.compose_host)
        if state.backups.compose_data and compose_ssh
        else None,
    )
    legacy_args = LegacyEstateArgs(
        environment=cfg.environment,
        gcp_vm=cfg.gcp_vm,
        gcp_vm_state=state.legacy.gcp_vm,
        compose_state=state.legacy.compose,
        compose_dir=cfg.compose_host.compose_dir,
        compose_ssh=compose_ssh,
    )
    # p0 on: the bucket. p2b on: verified dumps of the Compose data (the restore Jobs read them).
    backups = Backups("backups", backups_args)
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
    # What the platform's restore Jobs consume: verified["qdrant" | "redis" | "postgres"] (p2b on),
    # plus verified["fly-<app>"] for each Fly app (p1 on).
    backup_handle = backups.handle(extra=fly_apps.verified)
    outputs["backupBucket"] = backup_handle.bucket
    outputs["verifiedBackups"] = {name: vb.key for name, vb in backup_handle.verified.items()}
    # What the `backups-verified` exit check re-reads and compares (migrate/checks.py): every
    # object of every verified backup, a Fly app's volume archives as well as its manifest.
    outputs["backupObjects"] = pulumi.Output.all(
        *[_named_objects(name, vb) for name, vb in backup_handle.verified.items()]
    ).apply(lambda groups: [obj for group in groups for obj in group])

    # --- GPU hosts (components/hosts/gpu_host.py) ---------------------------------------------------
    # K3s nodes (role server/agent) exist from k3s.gpuHosts on. The workstation (static: nothing
    # is created for it) exists from k3s.gpuHosts or llama.workstation, whichever comes first: its
    # pinned host key and the admin public key it must trust are then in the stack outputs one
    # phase before the llama block first logs in to it.
    # `hosts` maps host name -> HostHandle for the blocks below; steps on a host wait on its
    # `handle.ready` (instance, firewalls, first-boot check, cluster peer rules).
    from components.handles import HostHandle
    from components.hosts.access import HostAccess, HostAccessArgs
    from components.hosts.gpu_host import GpuHost, GpuHostArgs
    from components.hosts.peers import ClusterPeers, ClusterPeersArgs, PeerNode

    hosts: dict[str, HostHandle] = {}
    wanted = [
        h
        for h in cfg.hosts
        if (h.is_k3s_node and state.k3s.gpu_hosts)
        or (h.role == "workstation" and (state.k3s.gpu_hosts or state.llama.workstation))
    ]
    if wanted:
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
        gpu_hosts = {
            h.name: GpuHost(
                h.name,
                GpuHostArgs(host=h, resource_prefix=prefix, access=access.handle, protect=cfg.is_prod),
            )
            for h in wanted
        }
        hosts = {name: gh.handle for name, gh in gpu_hosts.items()}
        nodes = [PeerNode(gh.handle, gh.gcp_target) for gh in gpu_hosts.values() if gh.handle.role != "workstation"]
        if nodes:
            peers = ClusterPeers("k3s-peers", ClusterPeersArgs(nodes=tuple(nodes), access=access.handle))
            hosts.update(peers.nodes)
        outputs["adminPublicKey"] = access.admin_public_key
        # Secret: `pulumi stack output adminPrivateKey --show-secrets` for an operator's own SSH.
        outputs["adminPrivateKey"] = access.admin_private_key
        outputs["hosts"] = {
            name: {
                "role": gh.handle.role,
                "source": gh.handle.source,
                "address": gh.address,
                "privateAddress": gh.private_address,
                "sshUser": gh.ssh_user,
                "hostKey": gh.host_public_key,
                "gpu": {"model": gh.gpu_model, "count": gh.gpu_count},
            }
            for name, gh in gpu_hosts.items()
        }

    # --- K3s and NVIDIA (components/cluster/k3s.py, components/cluster/nvidia.py) ------------------------------
    # From k3s.cluster on: K3s on the server/agent hosts (servers one at a time, then the agents
    # in parallel), the admin kubeconfig as a secret output, and `cluster` (a ClusterHandle) for
    # every in-cluster block below: its provider, and `deleted_with=cluster.cluster`.
    # From k3s.devicePlugin: NVIDIA's device plugin; GPU time-slicing from k3s.timeSlicing with
    # gpuTimeSlicingReplicas pods per GPU (1 = no sharing).
    from components.handles import ClusterHandle

    cluster: ClusterHandle | None = None
    if state.k3s.cluster:
        from components.cluster.k3s import K3sCluster, K3sClusterArgs, K3sSettings
        from components.cluster.nvidia import NvidiaDevicePlugin, NvidiaDevicePluginArgs

        k3s = K3sCluster(
            "k3s",
            K3sClusterArgs(
                hosts=tuple(h for h in hosts.values() if h.role in ("server", "agent")),
                settings=K3sSettings(
                    version=cfg.k3s_version, cluster_cidr=cfg.cluster_cidr, service_cidr=cfg.service_cidr
                ),
            ),
        )
        cluster = k3s.handle
        outputs["kubeconfig"] = k3s.kubeconfig  # secret
        outputs["k3sApiUrl"] = k3s.api_url
        outputs["k3sNodes"] = k3s.node_names
        outputs["gpuNodes"] = k3s.gpu_nodes
        if state.k3s.device_plugin:
            plugin = NvidiaDevicePlugin(
                "nvidia",
                NvidiaDevicePluginArgs(
                    cluster=cluster, time_slicing=state.k3s.time_slicing, replicas=cfg.gpu_time_slicing_replicas
                ),
            )
            outputs["gpuSharesPerGpu"] = plugin.replicas_per_gpu

    # --- platform on K3s (components/platform/platform.py) ---------------------------------------------
    # LEAD NOTE (rollback safety, read before wiring): resources that hold data - the Qdrant,
    # Redis and Postgres StatefulSets (and any standalone PVC) - are created as soon as
    # state.k3s.cluster and state.platform.retain_storage are on (p2a), not when the services
    # phase turns on: replicas 0 until state.platform.services_stateful, then the real count.
    # They carry protect + retain_on_delete in prod from creation. Rolling back p2b -> p2a is then
    # an update (replicas, restore Jobs, routes), never a delete of a protected resource; only
    # tearing the cluster down (p2a -> p1) removes them, which prod refuses by design.
    # Restore Jobs: namespace platform-data, label selector gpu-platform/restore=true (the
    # `restore-jobs-complete` check); public routes: app.<domain> and api.<domain>.
    platform_flags = state.platform.model_dump()
    platform: Platform | None = None
    if cluster is not None and (any(platform_flags.values()) or state.traffic.k3s_weight):
        from components.platform.platform import Platform, PlatformArgs, PlatformSecrets

        platform = Platform(
            "platform",
            PlatformArgs(
                config=cfg,
                state=state.platform,
                k3s_weight=state.traffic.k3s_weight,
                cluster=cluster,
                backups=backup_handle if state.platform.restore_from_backup else None,
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
        outputs["platform"] = platform.outputs
    elif any(platform_flags.values()):
        raise ConfigError(f"{phase.id}: platform components need k3s.cluster")

    # --- local llama servers and router (components/llm/llama.py) ---------------------------------
    # The model PVC follows the same rule as the data stores above: it exists from the moment the
    # cluster and retain storage exist (p2a), protect + retain_on_delete in prod, so rolling back
    # p3 -> p2c removes the Deployment/Service/router but never the downloaded weights.
    # llama.workstation: the container on the workstation (Docker over SSH, host key pinned);
    # llama.cluster: the server on the GPU nodes the sizing chose; llama.router: LiteLLM, local
    # first, cloud fallback only for router.fallbackAliases. Sizing was checked at config time.
    from components.llm.llama import build_local_brain
    from components.platform.datastores import STORAGE_CLASS
    from components.platform.platform import MONITORING_NAMESPACE
    from components.platform.platform import NAMESPACE as PLATFORM_NAMESPACE

    outputs.update(
        build_local_brain(
            cfg,
            secrets,
            state.llama,
            cluster=cluster,
            workstation=hosts.get(cfg.workstation.name) if cfg.workstation else None,
            storage_class=STORAGE_CLASS if cluster is not None and state.platform.retain_storage else None,
            # kube-prometheus-stack here selects every ServiceMonitor (components/platform/charts.py sets
            # serviceMonitorSelectorNilUsesHelmValues false): no extra labels needed.
            monitor_labels={} if state.platform.monitoring else None,
            monitoring_namespace=MONITORING_NAMESPACE if state.platform.monitoring else None,
            # The platform's services call the router.
            client_namespaces=(PLATFORM_NAMESPACE,),
            depends_on=list(platform.foundations) if platform is not None else [],
        )
    )

    # --- decommission: the legacy estate (components/migration/legacy.py) -------------------------------
    # Last, so that stopping the Compose services can wait for what the blocks above produced:
    # the verified dumps and the whole Platform component (its restore Jobs complete with it).
    compose_stop_after: list[Any] = []
    if state.legacy.compose == "stopped":
        compose_stop_after = [backup_handle.verified[s].resource for s in ("qdrant", "redis", "postgres")]
        if platform is not None:
            compose_stop_after.append(platform)
    legacy = LegacyEstate("legacy", legacy_args.model_copy(update={"compose_stop_after": compose_stop_after}))
    outputs["legacyVm"] = legacy.vm_self_link

    return outputs


def _named_objects(name: str, backup: VerifiedBackup) -> pulumi.Output[list[dict[str, Any]]]:
    return backup.objects.apply(lambda objs: [{"name": name, **obj} for obj in objs])
