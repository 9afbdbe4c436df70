"""Every pinned version in the project: K3s, Helm charts and container images.

One place to bump. Each pin says where it comes from and why it is the one we run; a comment
states only what was checked against the upstream source it names. Tests and policies read these
constants; nothing else in the project writes a version literal. Renovate (renovate.json at the
repository root) proposes bumps as pull requests, which `make test` then checks against the
charts' and CRDs' own files at the new versions (tools/upstream.lock, `make upstream-lock`).
"""

from __future__ import annotations

from typing import Final

# --- K3s -------------------------------------------------------------------------------------
# K3s 1.35 line, patch release v1.35.5+k3s1 (the bundled Traefik below is that release's).
# Never a channel: `INSTALL_K3S_CHANNEL` would let two nodes of one cluster drift apart.
K3S_VERSION: Final = "v1.35.5+k3s1"
# The Kubernetes minor that K3S_VERSION ships; rendered manifests are validated against it.
KUBERNETES_VERSION: Final = "1.35.0"

# --- backups and the legacy estate (components/migration/backups.py, components/migration/fly.py) ------------------
# The one-off Fly machine that mounts a volume restored from a snapshot and streams it out as a
# tarball through the exec endpoint: busybox tar, gzip, base64 and `set -o pipefail`. Alpine 3.24,
# the newest stable line (3.21's support ended on 2026-11-01, alpinelinux.org release branches).
FLY_EXPORT_IMAGE: Final = "docker.io/library/alpine:3.24.0"
# Uploads the Compose host's dumps to the backup bucket (`aws s3 cp`); AWS CLI v2, pinned release.
AWS_CLI_IMAGE: Final = "docker.io/amazon/aws-cli:2.32.2"

# --- platform on K3s (components/platform/platform.py, charts.py, services.py, datastores.py, traffic.py) --
# Helm charts: (repository, chart, version). A bump here is the only edit an upgrade needs;
# tests/test_chart_values.py checks every value the program gives a chart against that chart's
# own values.yaml, values.schema.json and templates at the pinned version.
# cert-manager v1.21.2 (jetstack): the 1.21 line supports Kubernetes 1.33-1.36, so 1.35. A
# cert-manager minor is supported until the release two minors later (cert-manager.io releases
# page), so 1.19 left support when 1.21 came out. `crds.enabled` is the chart's CRD switch
# (`installCRDs` is deprecated in its values.yaml and NOTES.txt).
CERT_MANAGER_CHART: Final = ("https://charts.jetstack.io", "cert-manager", "v1.21.2")
# kube-prometheus-stack 86.3.2 (prometheus-community): Prometheus Operator v0.91.0 (its
# appVersion); its grafana subchart is 12.4.8, which runs Grafana 13.0.2 (that chart's appVersion).
KUBE_PROMETHEUS_STACK_CHART: Final = (
    "https://prometheus-community.github.io/helm-charts",
    "kube-prometheus-stack",
    "86.3.2",
)
# Loki chart 6.56.1 (Loki 3.6.7) from the grafana-community fork: from 2026-03-16 the Loki chart
# of grafana.github.io/helm-charts is maintained for Grafana Enterprise Logs only (grafana/loki#20705;
# its 7.x releases are that chart), and OSS users were pointed to this fork, branched at 6.55.0.
LOKI_CHART: Final = ("https://grafana-community.github.io/helm-charts", "loki", "6.56.1")
# The alloy chart 1.5.1 (Grafana Alloy v1.12.1, its appVersion) ships pod logs to Loki; Promtail,
# which did that before, reached end of life on 2026-03-02 (Loki's Promtail documentation).
ALLOY_CHART: Final = ("https://grafana.github.io/helm-charts", "alloy", "1.5.1")
# Traefik is not installed by us: K3s ships it and we only configure it through a HelmChartConfig,
# so its version moves with K3S_VERSION. K3s v1.35.5+k3s1 bundles Traefik v3.6.13, whose upstream
# chart is traefik 39.0.8 (K3s repackages that chart). Recorded here only so the tests check our
# HelmChartConfig against that chart's own values.schema.json: bump it together with K3S_VERSION.
K3S_TRAEFIK_CHART_VERSION: Final = "39.0.8"
# The helm-controller line K3s embeds; its HelmChartConfig CRD is what our HelmChartConfig must fit
# (tests only). v0.16.26 is the newest tag of that line; bump it together with K3S_VERSION.
K3S_HELM_CONTROLLER_VERSION: Final = "v0.16.26"

# Data stores: official images, pinned by tag (digests are added when the image is mirrored).
# Postgres 18.4: PGDATA lives under /var/lib/postgresql/18/docker, the volume is /var/lib/postgresql.
POSTGRES_IMAGE: Final = "docker.io/library/postgres:18.4"
# Redis 8.6.3: the security release for CVE-2026-23479 (use-after-free in the unblock-client flow,
# 7.2.0 through 8.6.2). Redis loads the RDB files of the earlier releases the Compose host wrote.
REDIS_IMAGE: Final = "docker.io/library/redis:8.6.3"
# Qdrant v1.18.2, the -unprivileged build (runs as uid 1000, no root needed for the storage dir).
QDRANT_IMAGE: Final = "docker.io/qdrant/qdrant:v1.18.2-unprivileged"
# curl 8.22.0 on Alpine 3.24: `--aws-sigv4` (curl >= 7.75) reads the backups without an AWS CLI,
# busybox sha256sum/tar/gzip verify and unpack them.
RESTORE_FETCH_IMAGE: Final = "docker.io/curlimages/curl:8.22.0"
# Prometheus Pushgateway v1.11.3 (2026-05-27), the newest release tag of github.com/prometheus/pushgateway
# (`git tag` of the repository, read here); its README names Docker Hub's prom/pushgateway as the
# image, built from the tag's Dockerfile: USER 65534, WORKDIR /pushgateway. The scheduled backups'
# outcomes land here (components/platform/pushgateway.py).
PUSHGATEWAY_IMAGE: Final = "docker.io/prom/pushgateway:v1.11.3"
# nginx 1.30.4 (stable) unprivileged build: listens on 8080 as uid 101.
NGINX_IMAGE: Final = "docker.io/nginxinc/nginx-unprivileged:1.30.4-alpine"
# The organisation's own service images are `<registry>/<name>:<tag>` from stack config
# `serviceImages` (components/config/schema.py). These are its defaults: the registry is a placeholder
# (dev plans with a warning, prod refuses it), the tag the platform repository's current release.
PLATFORM_IMAGE_REGISTRY: Final = "ghcr.io/example-org"
# The registry the committed prod stack file names: a documentation value (RFC 2606), never pulled.
DOCUMENTATION_IMAGE_REGISTRY: Final = "registry.example.com/platform"
PLATFORM_RELEASE: Final = "2026.09.1"

# --- local llama servers and router (components/llm/llama.py, components/llm/router.py) ----------------
# llama.cpp's server image, CUDA 12 build b11312. The tests build llama-server from the llama.cpp
# tree vendored in the llama-cpp-python 0.3.36 sdist on PyPI (the only llama.cpp source a package
# index serves; LLAMA_CPP_TEST_SOURCE, scripts/build-llama-server.sh), whose CHANGELOG names upstream
# commit 0c1e57098 - the build script checks that line before building - and run every rendered
# command line against it, so what the tests accept is what the cluster runs if b11312 is that
# commit's build. That pairing is NOT established from the sdist: its tree carries no git metadata,
# so the binary built from it reports "build 0, commit unknown". It comes from public repositories
# found with the search tool that pin llama.cpp as "b11312-0c1e57098" or "b11312, commit
# 0c1e57098bba43ac29e6e3b677cdceebdd22334f"; ggml-org's own release page could not be read here.
# `make digests` (needs the network) resolves the tag's digest; check the release's commit then.
# Pinned by tag only until then: DIGEST_PENDING below says why (the previous pin, b9603, had its
# digest). CUDA 12.8 runtime: any driver >= 525 (CUDA minor-version compatibility), which the Lambda
# Stack and the workstation have; the cuda13 variant would need a 580+ driver. The tests build the
# same source for the CPU, so what they cannot cover is the CUDA backend itself (offload, flash
# attention on the GPU).
LLAMA_CPP_SERVER_IMAGE: Final = "ghcr.io/ggml-org/llama.cpp:server-cuda12-b11312"
# Where the tests get that source (see above); "build" is the image tag's build the commit is paired with.
LLAMA_CPP_TEST_SOURCE: Final = {"sdist": "llama-cpp-python==0.3.36", "commit": "0c1e57098", "build": "b11312"}
# LiteLLM proxy, the non-root variant (runs as `nobody`, so the pod passes the restricted Pod
# Security profile). v1.104.8 is past 1.84.0, which fixed the Host-header authentication bypass
# GHSA-4xpc-pv4p-pm3w (CVE-2026-49468), and past the compromised PyPI 1.82.7/1.82.8
# (BerriAI/litellm#24512). Pinned by tag only: its digest could not be read offline; resolve it
# with `crane digest ghcr.io/berriai/litellm-non_root:v1.104.8` and append `@sha256:...` here.
LITELLM_IMAGE: Final = "ghcr.io/berriai/litellm-non_root:v1.104.8"

# --- NVIDIA (components/cluster/nvidia.py, components/scripts/nvidia-toolkit.sh) ---------------------
# NVIDIA k8s-device-plugin chart from NVIDIA's own Helm repository, 0.19.3 of the 0.19 line.
# 0.20.1 is out (the first patch of 0.20, NVIDIA/k8s-device-plugin#2057) and is the next pin, but it
# is held back: the chart files at 0.20.1 were not available to check our values against here.
# Bump it together with tools/upstream.lock (`make upstream-lock`), whose files tests/test_chart_values.py reads.
NVIDIA_DEVICE_PLUGIN_CHART_REPO: Final = "https://nvidia.github.io/k8s-device-plugin"
NVIDIA_DEVICE_PLUGIN_CHART: Final = "nvidia-device-plugin"
NVIDIA_DEVICE_PLUGIN_VERSION: Final = "0.19.3"
# apt version of nvidia-container-toolkit (and its libnvidia-container packages), installed only
# on hosts whose image lacks it. 1.19.1 is the patch release of the 1.19 line.
NVIDIA_CONTAINER_TOOLKIT_VERSION: Final = "1.19.1-1"
# The nvidia-smi smoke pod's image. nvidia-smi itself is mounted from the host driver; the pod
# sets NVIDIA_DISABLE_REQUIRE so this image's CUDA requirement cannot fail the plumbing check.
CUDA_SMOKE_IMAGE: Final = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"

# NVIDIA dcgm-exporter chart 4.8.2 (NVIDIA/dcgm-exporter tag 4.5.3-4.8.2, folder deployment): GPU
# telemetry (utilisation, memory, power, temperature, XID errors) from DCGM, which the device plugin
# does not export. It needs only the nvidia runtime K3s sets up (runtimeClassName), not the GPU Operator.
DCGM_EXPORTER_CHART: Final = ("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.8.2")
# The image the 4.8.2 chart defaults to (values.yaml image.tag): DCGM 4.5.3 with exporter 4.8.2, the
# distroless build. Pinned here so a chart bump cannot change the image unseen.
DCGM_EXPORTER_IMAGE: Final = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"

# --- image digests ----------------------------------------------------------------------------
# An image reference is `repository:tag@sha256:<digest>`: the tag says which release, the digest
# is what runs, so a re-pushed tag cannot change it. The
# repositories below run by tag until their digest is resolved, each with the reason; a key ending
# in "/" covers every repository under it. `migrate plan` lists the pending images a plan uses,
# policy/config.<stack>.json names these same keys as the reviewed exceptions to the
# `image-digest-pinned` policy, mandatory in prod (tests/test_images.py keeps them equal); `make digests`
# resolves each pinned tag from its registry and prints the references to paste above.
_UNRESOLVED = "no registry was reachable where this pin was written; `make digests` resolves it"
_REPUSHED = (
    "a Docker Official Image whose tag is re-pushed on base-image rebuilds (public sources show "
    "several digests for it), so only the registry can say which is current; `make digests` resolves it"
)
DIGEST_PENDING: Final[dict[str, str]] = {
    "docker.io/library/alpine": _REPUSHED,
    "docker.io/library/postgres": _REPUSHED,
    "docker.io/library/redis": _REPUSHED,
    "docker.io/amazon/aws-cli": _UNRESOLVED,
    "docker.io/qdrant/qdrant": _UNRESOLVED,
    "docker.io/curlimages/curl": _UNRESOLVED,
    "docker.io/nginxinc/nginx-unprivileged": _UNRESOLVED,
    "docker.io/prom/pushgateway": _UNRESOLVED,
    "ghcr.io/berriai/litellm-non_root": _UNRESOLVED,
    "ghcr.io/ggml-org/llama.cpp": (
        "server-cuda12-b11312 is pinned to match the llama.cpp source the tests build (llama-cpp-python "
        "0.3.36, commit 0c1e57098); its digest could not be read offline; `make digests` resolves it"
    ),
    "nvcr.io/nvidia/cuda": _UNRESOLVED,
    "nvcr.io/nvidia/k8s/dcgm-exporter": _UNRESOLVED,
    f"{PLATFORM_IMAGE_REGISTRY}/": (
        "the dev stack's placeholder registry (PLATFORM_IMAGE_REGISTRY), which prod refuses; its "
        "images have no digest to pin"
    ),
    f"{DOCUMENTATION_IMAGE_REGISTRY}/": (
        "the committed prod stack's documentation registry (RFC 2606 example.com); a real prod stack "
        "names its own registry and pins each image with serviceImages.digests"
    ),
}
