"""The K3s and NVIDIA host scripts, run for real in a sandbox with stub binaries (tests/stubs).

Each test builds a fake host (a temp dir whose PATH holds only the stubs and a few coreutils),
runs a script from components/scripts, and asserts on its exit code, its messages, the files it
wrote and the stub calls it made. Waits are bounded by WAIT_SECONDS=1 / POLL_SECONDS=0.05.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import shellcheck

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "components" / "scripts"
STUBS = ROOT / "tests" / "stubs"
# The only real tools a script gets; anything else it calls must be a stub.
SYS_TOOLS = (
    "bash", "sh", "env", "cat", "cmp", "cp", "mv", "rm", "mkdir", "mktemp", "install", "touch",
    "chmod", "grep", "awk", "sed", "head", "tr", "sleep", "basename", "dirname",
)  # fmt: skip

V1 = "v1.35.5+k3s1"
V2 = "v1.35.6+k3s1"
TOOLKIT = "1.19.1-1"
CONFIG = "token: test-token-not-a-secret\nnode-name: server-1\ntls-san:\n  - 203.0.113.10\n"


class Host:
    """A fake machine: its installed binaries, its /etc and /var, and what every stub saw."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.sys = root / "sys"
        self.state = root / "state"
        self.log = root / "calls.log"
        for d in (self.bin, self.sys, self.state):
            d.mkdir()
        self.log.touch()
        for tool in SYS_TOOLS:
            real = shutil.which(tool)
            assert real, f"{tool} is needed to run the script tests"
            (self.sys / tool).symlink_to(real)
        self.config_dir = root / "etc-rancher-k3s"
        self.data_dir = root / "var-lib-rancher-k3s"

    def install(self, tool: str) -> None:
        shutil.copy(STUBS / "installable" / tool, self.bin / tool)

    def flag(self, name: str, content: str = "") -> None:
        path = self.state / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def calls(self, prefix: str = "") -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith(prefix)]

    def reset_log(self) -> None:
        self.log.write_text("")

    def run(self, script: str, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.bin}:{STUBS / 'bin'}:{self.sys}",
            "HOME": str(self.root),
            "STUB_LOG": str(self.log),
            "STUB_STATE": str(self.state),
            "STUB_BIN": str(self.bin),
            "STUB_ROOT": str(STUBS),
            "CONFIG_DIR": str(self.config_dir),
            "DATA_DIR": str(self.data_dir),
            "BIN_DIR": str(self.bin),
            "APT_KEYRING_DIR": str(self.root / "keyrings"),
            "APT_SOURCES_DIR": str(self.root / "sources.list.d"),
            "WAIT_SECONDS": "1",
            "POLL_SECONDS": "0.05",
        }
        return subprocess.run(
            ["bash", str(SCRIPTS / script), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**base, **env},
            timeout=30,
            check=False,
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def install_k3s(host: Host, stdin: str = CONFIG, **env: str) -> subprocess.CompletedProcess[str]:
    defaults = {"INSTALL_K3S_VERSION": V1, "ROLE": "server", "NODE_NAME": "server-1", "GPU_NODE": "0"}
    return host.run("k3s-install.sh", stdin=stdin, **{**defaults, **env})


# --- k3s-install.sh ------------------------------------------------------------------------------


def test_fresh_install_runs_the_pinned_installer_with_the_rendered_config(host: Host) -> None:
    result = install_k3s(host)
    assert result.returncode == 0, result.stderr
    assert host.calls("installer") == [f"installer INSTALL_K3S_VERSION={V1} INSTALL_K3S_EXEC=server"]
    # The installer script itself comes from the same tag, never from get.k3s.io's moving target.
    (download,) = host.calls("curl")
    assert download.endswith(f"https://raw.githubusercontent.com/k3s-io/k3s/{V1}/install.sh")
    config = host.config_dir / "config.yaml"
    assert config.read_text() == CONFIG
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the token
    assert f"done: K3s {V1} server server-1 (installed)" in result.stdout
    assert "test-token-not-a-secret" not in result.stdout + result.stderr


def test_second_run_changes_nothing(host: Host) -> None:
    assert install_k3s(host).returncode == 0
    config = host.config_dir / "config.yaml"
    before = config.stat().st_mtime_ns
    host.reset_log()

    result = install_k3s(host)

    assert result.returncode == 0, result.stderr
    assert host.calls("curl") == []
    assert host.calls("installer") == []
    assert host.calls("systemctl restart") == []
    assert config.stat().st_mtime_ns == before
    assert "nothing to do" in result.stdout
    assert "(none)" in result.stdout


def test_changed_config_restarts_the_service_without_reinstalling(host: Host) -> None:
    assert install_k3s(host).returncode == 0
    host.reset_log()
    new_config = CONFIG + "node-label:\n  - gpu-platform/pool=a\n"

    result = install_k3s(host, stdin=new_config)

    assert result.returncode == 0, result.stderr
    assert (host.config_dir / "config.yaml").read_text() == new_config
    assert host.calls("systemctl restart") == ["systemctl restart k3s"]
    assert host.calls("installer") == []
    assert "(restarted)" in result.stdout


def test_new_version_upgrades_through_the_installer_of_that_version(host: Host) -> None:
    assert install_k3s(host).returncode == 0
    host.reset_log()

    result = install_k3s(host, INSTALL_K3S_VERSION=V2)

    assert result.returncode == 0, result.stderr
    assert host.calls("installer") == [f"installer INSTALL_K3S_VERSION={V2} INSTALL_K3S_EXEC=server"]
    assert f"(upgraded from {V1})" in result.stdout


def test_stopped_service_is_started_again(host: Host) -> None:
    assert install_k3s(host).returncode == 0
    (host.state / "active-k3s").unlink()
    host.reset_log()

    result = install_k3s(host)

    assert result.returncode == 0, result.stderr
    assert host.calls("systemctl restart") == ["systemctl restart k3s"]


def test_failing_installer_fails_the_script_with_a_message(host: Host) -> None:
    host.flag("installer-fail")
    result = install_k3s(host)
    assert result.returncode != 0
    assert f"the K3s {V1} installer failed with exit code 3" in result.stderr


def test_failed_download_names_the_url(host: Host) -> None:
    host.flag("curl-fail")
    result = install_k3s(host)
    assert result.returncode != 0
    assert "could not download the K3s installer from https://raw.githubusercontent.com/k3s-io/k3s/" in result.stderr
    assert host.calls("installer") == []


@pytest.mark.parametrize("version", ["stable", "latest", "v1.35", "1.35.5+k3s1", ""])
def test_a_channel_or_partial_version_is_refused_before_anything_changes(host: Host, version: str) -> None:
    result = install_k3s(host, INSTALL_K3S_VERSION=version)
    assert result.returncode != 0
    assert "INSTALL_K3S_VERSION must be a pinned K3s release" in result.stderr
    assert host.calls() == []
    assert not (host.config_dir / "config.yaml").exists()


@pytest.mark.parametrize(
    ("stdin", "message"),
    [("", "no K3s config on stdin"), ("node-name: server-1\n", "has no 'token:' line")],
)
def test_missing_or_tokenless_config_is_refused(host: Host, stdin: str, message: str) -> None:
    result = install_k3s(host, stdin=stdin)
    assert result.returncode != 0
    assert message in result.stderr
    assert host.calls("installer") == []


def test_bad_role_is_refused(host: Host) -> None:
    result = install_k3s(host, ROLE="master")
    assert result.returncode != 0
    assert "ROLE must be 'server' or 'agent' (got 'master')" in result.stderr


def test_agent_installs_the_agent_service_and_does_not_query_the_api(host: Host) -> None:
    result = install_k3s(host, ROLE="agent", NODE_NAME="gpu-agent-1")
    assert result.returncode == 0, result.stderr
    assert host.calls("installer") == [f"installer INSTALL_K3S_VERSION={V1} INSTALL_K3S_EXEC=agent"]
    assert (host.state / "active-k3s-agent").exists()
    # An agent has no admin credentials; readiness is checked from the first server instead.
    assert host.calls("k3s kubectl") == []


def test_server_waits_for_its_node_to_be_ready_and_gives_up_with_a_message(host: Host) -> None:
    host.flag("nodes/server-1", "False")
    result = install_k3s(host)
    assert result.returncode != 0
    assert "node server-1 did not become Ready within 1s" in result.stderr


def test_gpu_node_passes_when_the_toolkit_was_installed_before_k3s(host: Host) -> None:
    host.install("nvidia-smi")
    toolkit = host.run("nvidia-toolkit.sh", GPU_EXPECTED="1", NVIDIA_TOOLKIT_VERSION=TOOLKIT)
    assert toolkit.returncode == 0, toolkit.stderr

    result = install_k3s(host, GPU_NODE="1")

    assert result.returncode == 0, result.stderr
    assert "nvidia container runtime configured in containerd" in result.stdout


def test_gpu_node_without_the_nvidia_runtime_fails_clearly(host: Host) -> None:
    # K3s started before the toolkit existed, so containerd has no nvidia runtime.
    result = install_k3s(host, GPU_NODE="1")
    assert result.returncode != 0
    assert "K3s did not configure the nvidia container runtime" in result.stderr
    assert "nvidia-toolkit.sh" in result.stderr


# --- nvidia-toolkit.sh ---------------------------------------------------------------------------


def toolkit(host: Host, **env: str) -> subprocess.CompletedProcess[str]:
    return host.run("nvidia-toolkit.sh", **{"GPU_EXPECTED": "1", "NVIDIA_TOOLKIT_VERSION": TOOLKIT, **env})


def test_missing_driver_on_a_gpu_node_is_a_clear_error(host: Host) -> None:
    result = toolkit(host)
    assert result.returncode != 0
    assert "no NVIDIA driver on this GPU node: nvidia-smi is not installed" in result.stderr
    assert host.calls("apt-get") == []


def test_missing_driver_on_a_cpu_node_is_skipped(host: Host) -> None:
    result = toolkit(host, GPU_EXPECTED="0")
    assert result.returncode == 0, result.stderr
    assert "skipping the container toolkit" in result.stdout
    assert host.calls("apt-get") == [] and host.calls("curl") == []


def test_broken_driver_on_a_gpu_node_is_a_clear_error(host: Host) -> None:
    host.install("nvidia-smi")
    host.flag("nvidia-smi-fail")
    result = toolkit(host)
    assert result.returncode != 0
    assert "nvidia-smi failed on this GPU node" in result.stderr
    assert "couldn't communicate with the NVIDIA driver" in result.stderr


def test_toolkit_is_installed_at_the_pinned_version_when_missing(host: Host) -> None:
    host.install("nvidia-smi")
    result = toolkit(host)
    assert result.returncode == 0, result.stderr
    (install,) = host.calls("apt-get install")
    for package in (
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ):
        assert f" {package}={TOOLKIT}" in install
    keyring = host.root / "keyrings" / "nvidia-container-toolkit-keyring.gpg"
    assert keyring.read_text() == "FAKE PGP KEY\n"
    sources = (host.root / "sources.list.d" / "nvidia-container-toolkit.list").read_text()
    assert sources == (f"deb [signed-by={keyring}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n")
    assert (host.bin / "nvidia-container-runtime").exists()
    assert "driver OK: NVIDIA H100 PCIe, 570.124.06" in result.stdout


def test_toolkit_second_run_changes_nothing(host: Host) -> None:
    host.install("nvidia-smi")
    assert toolkit(host).returncode == 0
    host.reset_log()
    result = toolkit(host)
    assert result.returncode == 0, result.stderr
    assert host.calls("apt-get") == [] and host.calls("curl") == [] and host.calls("gpg") == []
    assert "already installed" in result.stdout


def test_preinstalled_toolkit_is_left_alone_even_without_a_version(host: Host) -> None:
    # Lambda Stack images ship the toolkit; the pin only matters when we install it.
    host.install("nvidia-smi")
    host.install("nvidia-container-runtime")
    result = toolkit(host, NVIDIA_TOOLKIT_VERSION="")
    assert result.returncode == 0, result.stderr
    assert host.calls("apt-get") == []


def test_unpinned_toolkit_version_is_refused_when_an_install_is_needed(host: Host) -> None:
    host.install("nvidia-smi")
    result = toolkit(host, NVIDIA_TOOLKIT_VERSION="latest")
    assert result.returncode != 0
    assert "NVIDIA_TOOLKIT_VERSION must be a pinned apt version" in result.stderr
    assert host.calls("apt-get") == []


def test_apt_failure_fails_with_a_message(host: Host) -> None:
    host.install("nvidia-smi")
    host.flag("apt-fail")
    result = toolkit(host)
    assert result.returncode != 0
    assert "apt-get update failed after adding the NVIDIA repository" in result.stderr


def test_toolkit_install_restarts_a_running_k3s_so_it_finds_the_runtime(host: Host) -> None:
    host.install("nvidia-smi")
    host.flag("active-k3s-agent")
    result = toolkit(host)
    assert result.returncode == 0, result.stderr
    assert host.calls("systemctl restart") == ["systemctl restart k3s-agent"]


# --- k3s-remove.sh -------------------------------------------------------------------------------


def test_remove_on_a_host_without_k3s_succeeds_and_says_so(host: Host) -> None:
    result = host.run("k3s-remove.sh")
    assert result.returncode == 0, result.stderr
    assert "K3s is not installed" in result.stdout
    assert host.calls() == []


@pytest.mark.parametrize(("role", "uninstaller"), [("server", "k3s-uninstall.sh"), ("agent", "k3s-agent-uninstall.sh")])
def test_remove_runs_the_uninstaller_of_the_installed_role(host: Host, role: str, uninstaller: str) -> None:
    assert install_k3s(host, ROLE=role).returncode == 0
    host.reset_log()
    result = host.run("k3s-remove.sh")
    assert result.returncode == 0, result.stderr
    assert host.calls() == [uninstaller]
    assert not (host.bin / "k3s").exists()
    # Removing twice is fine (a retried `pulumi destroy`).
    assert host.run("k3s-remove.sh").returncode == 0


def test_failing_uninstaller_fails_with_a_message(host: Host) -> None:
    assert install_k3s(host).returncode == 0
    host.flag("uninstall-fail")
    result = host.run("k3s-remove.sh")
    assert result.returncode != 0
    assert "k3s-uninstall.sh failed with exit code 1" in result.stderr


# --- k3s-admin.sh --------------------------------------------------------------------------------

KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n"


def test_kubeconfig_prints_exactly_the_file(host: Host) -> None:
    host.config_dir.mkdir()
    (host.config_dir / "k3s.yaml").write_text(KUBECONFIG)
    result = host.run("k3s-admin.sh", "kubeconfig")
    assert result.returncode == 0, result.stderr
    assert result.stdout == KUBECONFIG  # messages go to stderr, never into the captured secret


def test_missing_kubeconfig_times_out_with_a_message(host: Host) -> None:
    result = host.run("k3s-admin.sh", "kubeconfig")
    assert result.returncode != 0
    assert "no admin kubeconfig at" in result.stderr
    assert result.stdout == ""


def test_runtimeclass_check(host: Host) -> None:
    host.install("k3s")
    missing = host.run("k3s-admin.sh", "runtimeclass", "nvidia")
    assert missing.returncode != 0
    assert "RuntimeClass nvidia does not exist after 1s" in missing.stderr

    host.flag("runtimeclass-nvidia", "nvidia")
    present = host.run("k3s-admin.sh", "runtimeclass", "nvidia")
    assert present.returncode == 0, present.stderr
    assert "RuntimeClass nvidia exists (handler nvidia)" in present.stderr


def test_node_ready_waits_for_ready(host: Host) -> None:
    host.install("k3s")
    host.flag("nodes/gpu-agent-1", "False")
    assert "gpu-agent-1 is not Ready after 1s" in host.run("k3s-admin.sh", "node-ready", "gpu-agent-1").stderr
    host.flag("nodes/gpu-agent-1", "True")
    assert host.run("k3s-admin.sh", "node-ready", "gpu-agent-1").returncode == 0


def test_node_ready_with_a_version_waits_for_the_node_to_run_it(host: Host) -> None:
    host.install("k3s")
    host.flag("nodes/gpu-agent-1", "True")
    host.flag("nodes/gpu-agent-1.version", V1)
    stale = host.run("k3s-admin.sh", "node-ready", "gpu-agent-1", V2)
    assert stale.returncode != 0
    assert f"node gpu-agent-1 runs {V1}, not {V2}, after 1s" in stale.stderr
    host.flag("nodes/gpu-agent-1.version", V2)
    upgraded = host.run("k3s-admin.sh", "node-ready", "gpu-agent-1", V2)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"node gpu-agent-1 is Ready on {V2}" in upgraded.stderr


def test_node_remove_drains_then_deletes_and_is_idempotent(host: Host) -> None:
    host.install("k3s")
    host.flag("nodes/gpu-agent-2", "True")
    host.flag("secrets/gpu-agent-2.node-password.k3s", "hash")
    result = host.run("k3s-admin.sh", "node-remove", "gpu-agent-2")
    assert result.returncode == 0, result.stderr
    kubectl = [c for c in host.calls("k3s kubectl") if "get node" not in c]
    assert kubectl[0].startswith("k3s kubectl drain gpu-agent-2 --ignore-daemonsets")
    assert kubectl[1] == "k3s kubectl delete node gpu-agent-2"
    # The password K3s recorded for the name goes too, so a new host of that name can join.
    assert not (host.state / "secrets" / "gpu-agent-2.node-password.k3s").exists()
    again = host.run("k3s-admin.sh", "node-remove", "gpu-agent-2")
    assert again.returncode == 0
    assert "not in the cluster; nothing to remove" in again.stderr


def test_node_remove_forgets_the_password_of_a_node_that_is_already_gone(host: Host) -> None:
    # A preempted host whose Node object was cleaned up still has its password recorded.
    host.install("k3s")
    host.flag("secrets/gpu-agent-2.node-password.k3s", "hash")
    result = host.run("k3s-admin.sh", "node-remove", "gpu-agent-2")
    assert result.returncode == 0, result.stderr
    assert not (host.state / "secrets" / "gpu-agent-2.node-password.k3s").exists()
    assert not any("drain" in c for c in host.calls("k3s kubectl"))


def test_node_remove_stops_when_the_drain_fails(host: Host) -> None:
    host.install("k3s")
    host.flag("nodes/gpu-agent-2", "True")
    host.flag("drain-fail")
    result = host.run("k3s-admin.sh", "node-remove", "gpu-agent-2")
    assert result.returncode != 0
    assert "could not drain node gpu-agent-2" in result.stderr
    assert (host.state / "nodes" / "gpu-agent-2").exists()


def test_admin_usage_errors(host: Host) -> None:
    for args in ((), ("node-ready",), ("node-ready", "a", "b", "c"), ("frobnicate", "x")):
        result = host.run("k3s-admin.sh", *args)
        assert result.returncode != 0
        assert "usage: k3s-admin.sh" in result.stderr


# --- every script ------------------------------------------------------------------------------


def all_scripts() -> list[Path]:
    return sorted(SCRIPTS.glob("*.sh"))


def test_shellcheck_reports_nothing_on_any_script() -> None:
    scripts = all_scripts()
    assert scripts, "components/scripts has no scripts"
    result = subprocess.run(
        [shellcheck(), "--format=gcc", *map(str, scripts)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The host scripts of this area; other areas' container scripts are POSIX sh by design.
# Scripts that run in minimal images (busybox or the store's own image: no bash there) are POSIX
# sh; every other one is bash.
POSIX_SH = {
    "backup-dump-postgres.sh",
    "backup-dump-qdrant.sh",
    "backup-dump-redis.sh",
    "backup-report.sh",
    "backup-upload.sh",
    "backup-verify-postgres.sh",
    "backup-verify-qdrant.sh",
    "backup-verify-redis.sh",
    "fetch-model.sh",
    "fly-volume-export.sh",
    "restore-fetch.sh",
    "restore-postgres.sh",
    "restore-qdrant.sh",
    "restore-redis.sh",
    "ssh-identity.sh",
}


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_every_script_is_strict(script: Path) -> None:
    lines = script.read_text().splitlines()
    if script.name in POSIX_SH:
        assert lines[0] == "#!/bin/sh"
        assert "set -eu" in lines
    else:
        assert lines[0] == "#!/usr/bin/env bash"
        assert "set -euo pipefail" in lines
