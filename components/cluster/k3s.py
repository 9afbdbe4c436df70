"""K3s on the GPU hosts, bootstrapped over SSH: HA control plane, GPU agents, kubeconfig as a secret.

Per host (every resource named after the host, never an index, so adding or removing one host
touches only that host's resources):

    <name>-<host>-script-*      the host scripts, written to ~/.gpu-platform/ (content on stdin)
    <name>-<host>-nvidia-toolkit  nvidia-toolkit.sh: driver check, container toolkit if missing
    <name>-<host>-install       k3s-install.sh with the rendered config on stdin; delete: k3s-remove.sh
    <name>-<host>-ready         on the first server: wait for the node Ready; delete: drain + delete node
    <name>-<host>-node          NodePatch: the node's labels (and GPU taint), kept in sync

Ordering, as dependencies between the install steps:

    first server  ->  server 2  ->  ...  ->  last server  ->  every agent (in parallel)

The first server initialises the cluster (embedded etcd when there are several servers); each
further server joins it only after the previous one is Ready, because etcd takes members one at
a time. Agents depend on the last server only, never on each other. The same chain orders an
upgrade: a new `k3sVersion` changes every install step, and Pulumi updates them along the chain -
servers one at a time, then agents (docs/k3s-upgrades.md).

Cluster-wide: the join token (`RandomPassword`, secret), the admin kubeconfig read on the first
server (logging off, stdout a secret output), `127.0.0.1` rewritten to the API address in a pure
transform, a `kubernetes.Provider` built from it, and a check that K3s's `nvidia` RuntimeClass
exists. Everything reaches the hosts as script files plus a one-line invocation; secrets travel
on stdin, never on a command line.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_command as command
import pulumi_kubernetes as kubernetes
import pulumi_random as random
import yaml
from pydantic import InstanceOf, field_validator, model_validator

from components import HOST_SCRIPT_DIR
from components.catalog import versions
from components.catalog.gpus import GpuSpec
from components.cluster import nvidia
from components.core.errors import ConfigError
from components.core.model import Args
from components.handles import ClusterHandle, HostHandle

API_PORT = 6443
SCRIPTS_DIR = HOST_SCRIPT_DIR
REMOTE_DIR = ".gpu-platform"  # under the SSH user's home directory
INSTALL_SCRIPT = "k3s-install.sh"
REMOVE_SCRIPT = "k3s-remove.sh"
ADMIN_SCRIPT = "k3s-admin.sh"
HOST_SCRIPTS = (nvidia.TOOLKIT_SCRIPT, INSTALL_SCRIPT, REMOVE_SCRIPT)  # on every node
FIRST_SERVER_SCRIPTS = (ADMIN_SCRIPT,)  # cluster-level steps run on the first server only
ROLE_LABEL = "gpu-platform/role"
SOURCE_LABEL = "gpu-platform/source"
PLATFORM_LABELS = frozenset(
    {ROLE_LABEL, SOURCE_LABEL, nvidia.GPU_PRESENT_LABEL, nvidia.GPU_MODEL_LABEL, nvidia.GPU_COUNT_LABEL}
)
# Components K3s can be told not to deploy (`--disable`). Traefik is not among the choices: the
# platform's ingress is K3s's own Traefik (never ingress-nginx).
DISABLABLE = ("servicelb", "local-storage", "metrics-server", "coredns")
_K3S_RELEASE = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")
_LOCALHOST_SERVER = re.compile(r"(server:\s*https://)(?:127\.0\.0\.1|localhost|\[::1\])(:\d+)")

Role = Literal["server", "agent"]


class K3sSettings(Args):
    """Cluster-wide K3s settings, from stack config."""

    version: str = versions.K3S_VERSION
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    disable: tuple[str, ...] = ()
    extra_tls_sans: tuple[str, ...] = ()  # e.g. a DNS name in front of the servers
    write_kubeconfig_mode: str = "0600"  # the admin kubeconfig is root's only; we read it with sudo
    secrets_encryption: bool = True  # Secrets encrypted at rest in etcd

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _K3S_RELEASE.match(v):
            raise ValueError("must be a pinned K3s release such as v1.35.5+k3s1, never a channel like 'stable'")
        return v

    @field_validator("cluster_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v, strict=True))
        except ValueError:
            raise ValueError("not a valid CIDR such as 10.42.0.0/16") from None

    @field_validator("disable")
    @classmethod
    def _disable(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(v) - set(DISABLABLE))
        if unknown:
            allowed = ", ".join(DISABLABLE)
            raise ValueError(f"cannot disable {unknown}; allowed: {allowed} (traefik stays: it is the ingress)")
        return tuple(sorted(set(v)))

    @field_validator("write_kubeconfig_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if not re.fullmatch(r"0[0-7]{3}", v):
            raise ValueError("must be an octal file mode such as 0600")
        return v


# --- the plan: pure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePlan:
    """What K3s makes of one host, decided before any resource exists."""

    name: str
    role: Role
    first: bool  # the first server: initialises the cluster, runs the cluster-level steps
    cluster_init: bool  # first server of an HA cluster: start embedded etcd
    after: str | None  # the node whose install must finish before this one starts
    gpu: GpuSpec | None
    dedicated_gpu: bool
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[nvidia.Taint, ...] = ()


def plan_nodes(hosts: Sequence[HostHandle]) -> tuple[NodePlan, ...]:
    """Servers in config order (each after the previous), then agents (each after the last server)."""
    validate_hosts(hosts)
    servers = [h for h in hosts if h.role == "server"]
    agents = [h for h in hosts if h.role == "agent"]
    plans: list[NodePlan] = []
    for i, host in enumerate(servers):
        plans.append(_plan(host, "server", first=i == 0, ha=len(servers) > 1, after=servers[i - 1].name if i else None))
    for host in agents:
        plans.append(_plan(host, "agent", first=False, ha=False, after=servers[-1].name))
    return tuple(plans)


def _plan(host: HostHandle, role: Role, first: bool, ha: bool, after: str | None) -> NodePlan:
    labels = {
        **host.labels,
        ROLE_LABEL: role,
        SOURCE_LABEL: host.source,
        **nvidia.gpu_labels(host.gpu),
    }
    return NodePlan(
        name=host.name,
        role=role,
        first=first,
        cluster_init=first and ha,
        after=after,
        gpu=host.gpu,
        dedicated_gpu=host.dedicated_gpu,
        labels=dict(sorted(labels.items())),
        taints=nvidia.gpu_taints(host.gpu, host.dedicated_gpu),
    )


def validate_hosts(hosts: Sequence[HostHandle]) -> None:
    """The host list K3s can be built from; a ConfigError names what is wrong."""
    if not hosts:
        raise ConfigError("K3s needs at least one host with role server")
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"hosts: duplicate K3s node name(s) {dupes}")
    wrong = sorted(h.name for h in hosts if h.role not in ("server", "agent"))
    if wrong:
        raise ConfigError(f"hosts {wrong}: only role server or agent joins K3s")
    servers = [h for h in hosts if h.role == "server"]
    if not servers:
        raise ConfigError("hosts: K3s needs at least one host with role server")
    if len(servers) % 2 == 0:
        raise ConfigError(f"hosts: {len(servers)} servers; embedded etcd needs an odd number (1, 3 or 5)")
    for h in hosts:
        reserved = sorted(set(h.labels) & PLATFORM_LABELS)
        if reserved:
            raise ConfigError(f"host {h.name!r}: labels {reserved} are set by the platform; remove them")


def render_config(
    plan: NodePlan,
    settings: K3sSettings,
    *,
    token: str,
    server_url: str | None,
    node_ip: str | None,
    external_ip: str,
    tls_sans: Sequence[str],
) -> str:
    """The node's /etc/rancher/k3s/config.yaml. Deterministic: same inputs, same bytes."""
    config: dict[str, Any] = {"token": token, "node-name": plan.name}
    if node_ip:
        config["node-ip"] = node_ip
    config["node-external-ip"] = external_ip
    # Taints are applied when the node registers, so a dedicated GPU node never runs a CPU pod;
    # the NodePatch keeps them (and the labels, which only the NodePatch sets) in sync later,
    # because kubelet ignores changed registration flags (kubernetes/kubernetes#59314).
    if plan.taints:
        config["node-taint"] = [t.k3s_flag() for t in plan.taints]
    if plan.cluster_init:
        config["cluster-init"] = True
    if server_url is not None:
        config["server"] = server_url
    if plan.role == "server":
        config["tls-san"] = sorted(set(tls_sans))
        config["cluster-cidr"] = settings.cluster_cidr
        config["service-cidr"] = settings.service_cidr
        if settings.disable:
            config["disable"] = list(settings.disable)
        config["write-kubeconfig-mode"] = settings.write_kubeconfig_mode
        config["secrets-encryption"] = settings.secrets_encryption
        # Nodes talk over their public addresses, encrypted: server candidates may land in
        # different Lambda regions and agents in another cloud, with no private network between.
        config["flannel-backend"] = "wireguard-native"
        config["flannel-external-ip"] = True
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _renderer(plan: NodePlan, settings: K3sSettings) -> Callable[[dict[str, Any]], str]:
    """`render_config` for one node, over the resolved values of `Output.all(...)`."""

    def render(v: dict[str, Any]) -> str:
        return render_config(
            plan,
            settings,
            token=v["token"],
            server_url=v["server_url"],
            node_ip=v["node_ip"],
            external_ip=v["external_ip"],
            tls_sans=v["sans"],
        )

    return render


def rewrite_kubeconfig(kubeconfig: str, api_address: str) -> str:
    """K3s writes its admin kubeconfig for https://127.0.0.1:6443; point it at the API address."""
    host = f"[{api_address}]" if ":" in api_address else api_address
    rewritten, count = _LOCALHOST_SERVER.subn(lambda m: f"{m.group(1)}{host}{m.group(2)}", kubeconfig)
    if count == 0:
        # A transform cannot report nicely; say which file is wrong and what was expected.
        raise ValueError("the K3s admin kubeconfig has no 'server: https://127.0.0.1:<port>' line to rewrite")
    return rewritten


def remote_home(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def remote_script(user: str, script: str) -> str:
    return f"{remote_home(user)}/{REMOTE_DIR}/{script}"


def invocation(user: str, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """The one-line command that runs a copied script as root: `sudo env K=V bash <path> args`.

    Variables go on the command line because SSH servers drop client-set environment unless
    AcceptEnv allows it (see the pulumi-command `environment` docs); only non-secret values here.
    """
    parts = ["sudo"]
    if env:
        parts += ["env", *(f"{k}={shlex.quote(v)}" for k, v in env.items())]
    parts += ["bash", shlex.quote(remote_script(user, script)), *map(shlex.quote, args)]
    return " ".join(parts)


def script_sha256(script: str) -> str:
    return hashlib.sha256((SCRIPTS_DIR / script).read_bytes()).hexdigest()


# --- the component ---------------------------------------------------------------------------------


class K3sClusterArgs(Args):
    # role server or agent; the first server is the cluster's seed
    hosts: tuple[InstanceOf[HostHandle], ...]
    settings: K3sSettings

    @model_validator(mode="after")
    def _buildable(self) -> K3sClusterArgs:
        validate_hosts(self.hosts)
        missing = [s for s in (*HOST_SCRIPTS, *FIRST_SERVER_SCRIPTS) if not (SCRIPTS_DIR / s).is_file()]
        if missing:
            raise ConfigError(f"components/scripts is missing {missing}")
        return self


def _tls_sans(settings: K3sSettings, servers: Sequence[HostHandle]) -> list[pulumi.Input[str]]:
    """Every name the API certificate must carry: the configured extras, then each server's addresses."""
    sans: list[pulumi.Input[str]] = [*settings.extra_tls_sans]
    for server in servers:
        sans.append(server.address)
        if server.private_address is not None:
            sans.append(server.private_address)
    return sans


def _node_config(
    plan: NodePlan,
    host: HostHandle,
    *,
    first: HostHandle,
    settings: K3sSettings,
    token: pulumi.Output[str],
    sans: Sequence[pulumi.Input[str]],
) -> pulumi.Output[str]:
    """The node's rendered K3s config (secret: it holds the join token)."""
    server_url = None if plan.first else pulumi.Output.concat("https://", first.address, f":{API_PORT}")
    return pulumi.Output.secret(
        pulumi.Output.all(
            token=token,
            server_url=server_url,
            node_ip=host.private_address,
            external_ip=host.address,
            sans=pulumi.Output.all(*sans),
        ).apply(_renderer(plan, settings))
    )


class K3sCluster(pulumi.ComponentResource):
    """K3s on `args.hosts` over SSH; yields a `ClusterHandle` for everything that runs in it."""

    handle: ClusterHandle
    kubeconfig: pulumi.Output[str]  # secret
    api_address: pulumi.Output[str]
    api_url: pulumi.Output[str]
    node_names: list[str]
    gpu_nodes: list[str]

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gpu-platform:k3s:K3sCluster", name, None, opts)
        settings = args.settings
        plans = plan_nodes(args.hosts)
        hosts = {h.name: h for h in args.hosts}
        first = hosts[plans[0].name]

        token = self._join_token(name)
        self.api_address = pulumi.Output.from_input(first.address)
        self.api_url = self.api_address.apply(lambda a: f"https://{a}:{API_PORT}")
        sans = _tls_sans(settings, [hosts[p.name] for p in plans if p.role == "server"])

        # Scripts on every host (the first server also gets the cluster-level one). The script
        # travels as the command's stdin, so a plan diff shows exactly which lines changed.
        copies = {plan.name: self._copy_scripts(name, plan, hosts[plan.name]) for plan in plans}
        admin = copies[first.name][ADMIN_SCRIPT]

        installs: dict[str, command.remote.Command] = {}
        ready: dict[str, command.remote.Command] = {}
        patches: list[pulumi.Resource] = []
        provider: kubernetes.Provider | None = None
        kubeconfig: pulumi.Output[str] | None = None
        for plan in plans:
            host = hosts[plan.name]
            toolkit = self._toolkit(name, plan, host, copies[plan.name][nvidia.TOOLKIT_SCRIPT])
            # The previous server (for agents: the last server) installed AND its node Ready on
            # this release: etcd takes one new member at a time, an upgrade one server at a time.
            predecessor = [installs[plan.after], ready[plan.after]] if plan.after is not None else []
            install = self._install(
                name,
                plan,
                host,
                _node_config(plan, host, first=first, settings=settings, token=token, sans=sans),
                settings,
                toolkit=toolkit,
                scripts=copies[plan.name],
                predecessor=predecessor,
            )
            installs[plan.name] = install

            if plan.first:
                kubeconfig, provider = self._kubeconfig(name, first, install, admin, settings)
            assert provider is not None and kubeconfig is not None  # the first plan is the first server

            ready[plan.name] = self._node_ready(
                name, plan, first=first, install=install, admin=admin, settings=settings, cluster=installs[first.name]
            )
            patches.append(self._node_patch(name, plan, provider, ready[plan.name], installs[first.name]))

        assert provider is not None and kubeconfig is not None
        gpu_plans = [p for p in plans if p.gpu is not None]
        checks = self._runtime_check(name, first, installs[first.name], admin, settings) if gpu_plans else []

        self.kubeconfig = kubeconfig
        self.node_names = [p.name for p in plans]
        self.gpu_nodes = [p.name for p in gpu_plans]
        self.handle = ClusterHandle(
            provider=provider,
            cluster=installs[first.name],
            kubeconfig=kubeconfig,
            api_address=self.api_address,
            gpu_nodes=tuple(self.gpu_nodes),
            # Each node's patch waits for its node Ready, which waits for its install: depending on
            # the patches and checks orders after every step of every node, with 7 edges, not 19.
            ready=(*patches, *checks),
        )
        self.register_outputs(
            {
                "kubeconfig": self.kubeconfig,
                "apiAddress": self.api_address,
                "apiUrl": self.api_url,
                "nodes": self.node_names,
                "gpuNodes": self.gpu_nodes,
            }
        )

    def _join_token(self, name: str) -> pulumi.Output[str]:
        token = random.RandomPassword(
            f"{name}-token",
            length=48,
            special=False,  # lands in YAML and is compared byte for byte by K3s: keep it plain
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        return pulumi.Output.secret(token.result)

    def _copy_scripts(self, name: str, plan: NodePlan, host: HostHandle) -> dict[str, command.remote.Command]:
        scripts = HOST_SCRIPTS + (FIRST_SERVER_SCRIPTS if plan.first else ())
        return {script: self._copy_script(name, plan.name, host, script) for script in scripts}

    def _copy_script(self, name: str, node: str, host: HostHandle, script: str) -> command.remote.Command:
        path = shlex.quote(remote_script(host.ssh.user, script))
        write = f"install -D -v -m 0755 /dev/stdin {path}"
        return command.remote.Command(
            f"{name}-{node}-script-{script.removesuffix('.sh')}",
            connection=host.ssh.connection(),
            create=write,
            update=write,  # a new revision overwrites the file in place
            # Runs after the steps that use the script are deleted (they depend on this copy).
            delete=f"rm -f {path}",
            stdin=(SCRIPTS_DIR / script).read_text(),
            # stdout is only install's "'/dev/stdin' -> <path>". The script text names credential
            # files (k3s.yaml), and the secrets-stay-secret policy treats any command whose text
            # does as a reader of them; nothing is lost by keeping this stdout out of logs.
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(host.ready),
                additional_secret_outputs=["stdout"],
                custom_timeouts=pulumi.CustomTimeouts(create="5m", update="5m", delete="5m"),
            ),
        )

    def _toolkit(
        self, name: str, plan: NodePlan, host: HostHandle, script: command.remote.Command
    ) -> command.remote.Command:
        return command.remote.Command(
            f"{name}-{plan.name}-nvidia-toolkit",
            connection=host.ssh.connection(),
            create=invocation(host.ssh.user, nvidia.TOOLKIT_SCRIPT, env=nvidia.toolkit_env(plan.gpu is not None)),
            triggers=[script_sha256(nvidia.TOOLKIT_SCRIPT), versions.NVIDIA_CONTAINER_TOOLKIT_VERSION],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*host.ready, script],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m"),
            ),
        )

    def _install(
        self,
        name: str,
        plan: NodePlan,
        host: HostHandle,
        config: pulumi.Output[str],
        settings: K3sSettings,
        *,
        toolkit: command.remote.Command,
        scripts: dict[str, command.remote.Command],
        predecessor: list[command.remote.Command],
    ) -> command.remote.Command:
        user = host.ssh.user
        install_cmd = invocation(
            user,
            INSTALL_SCRIPT,
            env={
                "INSTALL_K3S_VERSION": settings.version,
                "ROLE": plan.role,
                "NODE_NAME": plan.name,
                "GPU_NODE": "1" if plan.gpu is not None else "0",
                # Unused by the script: a new script revision changes the command, which
                # re-runs the step as an update.
                "SCRIPT_SHA256": script_sha256(INSTALL_SCRIPT),
            },
        )
        return command.remote.Command(
            f"{name}-{plan.name}-install",
            connection=host.ssh.connection(),
            create=install_cmd,
            # Every change (version, config on stdin, script) is an update that re-runs the
            # script. Never a replacement: that would install again and then run the old
            # resource's delete (uninstall) on the same host. Hence no `triggers` here: the SDK
            # marks them replaceOnChanges even when `update` is set (pulumi/pulumi-command#855).
            update=install_cmd,
            delete=invocation(user, REMOVE_SCRIPT),
            stdin=config,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *host.ready,
                    toolkit,  # K3s must find nvidia-container-runtime when it starts
                    scripts[INSTALL_SCRIPT],
                    scripts[REMOVE_SCRIPT],
                    *predecessor,
                ],
                additional_secret_outputs=["stdin"],
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="20m", delete="10m"),
            ),
        )

    def _kubeconfig(
        self,
        name: str,
        first: HostHandle,
        install: command.remote.Command,
        admin: command.remote.Command,
        settings: K3sSettings,
    ) -> tuple[pulumi.Output[str], kubernetes.Provider]:
        read = command.remote.Command(
            f"{name}-kubeconfig",
            connection=first.ssh.connection(),
            create=invocation(first.ssh.user, ADMIN_SCRIPT, "kubeconfig"),
            # Re-read after an upgrade (K3s renews certificates on restart) or a reinstall.
            triggers=[settings.version, install.id],
            logging=command.remote.Logging.NONE,  # stdout is the admin credential
            # Without this the previous kubeconfig would be sent back to the host as an env var.
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[install, admin],
                additional_secret_outputs=["stdout", "stderr"],
                custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m"),
            ),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(read.stdout, self.api_address).apply(lambda v: rewrite_kubeconfig(v[0], v[1]))
        )
        provider = kubernetes.Provider(
            f"{name}-provider",
            kubeconfig=kubeconfig,
            # The cluster's identity is its seed server, not its credentials: a re-read kubeconfig
            # (renewed certificate) updates the provider instead of replacing every object in it.
            cluster_identifier=f"{name}-{first.name}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        return kubeconfig, provider

    def _node_ready(
        self,
        name: str,
        plan: NodePlan,
        *,
        first: HostHandle,
        install: command.remote.Command,
        admin: command.remote.Command,
        settings: K3sSettings,
        cluster: command.remote.Command,
    ) -> command.remote.Command:
        # The version makes an upgrade re-run this step: it waits for the node on the new release.
        node_ready_cmd = invocation(first.ssh.user, ADMIN_SCRIPT, "node-ready", plan.name, settings.version)
        return command.remote.Command(
            f"{name}-{plan.name}-ready",
            connection=first.ssh.connection(),
            create=node_ready_cmd,
            update=node_ready_cmd,
            # Taking a host out of the config drains its node and removes it from the cluster
            # (for a server, K3s then drops its etcd member) before K3s is uninstalled there.
            delete=invocation(first.ssh.user, ADMIN_SCRIPT, "node-remove", plan.name),
            # No triggers, as for the install: a replacement would drain and delete the node.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[install, admin],
                # Tearing the whole cluster down needs no drains.
                deleted_with=cluster,
                custom_timeouts=pulumi.CustomTimeouts(create="15m", update="15m", delete="15m"),
            ),
        )

    def _node_patch(
        self,
        name: str,
        plan: NodePlan,
        provider: kubernetes.Provider,
        ready: command.remote.Command,
        cluster: command.remote.Command,
    ) -> pulumi.Resource:
        spec = None
        if plan.taints:
            spec = kubernetes.core.v1.NodeSpecPatchArgs(
                taints=[
                    kubernetes.core.v1.TaintPatchArgs(key=t.key, value=t.value, effect=t.effect) for t in plan.taints
                ]
            )
        return kubernetes.core.v1.NodePatch(
            f"{name}-{plan.name}-node",
            metadata=kubernetes.meta.v1.ObjectMetaPatchArgs(
                name=plan.name,
                labels=plan.labels,
                # The taint list is also written by the kubelet at registration (node-taint) and by
                # the node lifecycle controller; server-side apply needs force to own it.
                annotations={"pulumi.com/patchForce": "true"},
            ),
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                depends_on=[ready],
                deleted_with=cluster,
            ),
        )

    def _runtime_check(
        self,
        name: str,
        first: HostHandle,
        cluster: command.remote.Command,
        admin: command.remote.Command,
        settings: K3sSettings,
    ) -> list[pulumi.Resource]:
        """That K3s registered its `nvidia` RuntimeClass (it does when it finds the NVIDIA runtime)."""
        runtime_check = invocation(first.ssh.user, ADMIN_SCRIPT, "runtimeclass", nvidia.RUNTIME_CLASS)
        return [
            command.remote.Command(
                f"{name}-runtimeclass",
                connection=first.ssh.connection(),
                create=runtime_check,
                update=runtime_check,
                triggers=[settings.version],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[cluster, admin],
                    custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m"),
                ),
            )
        ]
