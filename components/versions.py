"""Every pinned version in the project: K3s, Helm charts and container images.

One place to bump. Each pin says where it comes from and why it is the one we run. Tests and
policies read these constants; nothing else in the project writes a version literal.
"""

from __future__ import annotations

from typing import Final

# --- K3s -------------------------------------------------------------------------------------
# K3s stable line 1.35; v1.35.5+k3s1 is the patch release of k3s-io/k3s#14050 (Go 1.25.9).
# Never a channel: `INSTALL_K3S_CHANNEL` would let two nodes of one cluster drift apart.
K3S_VERSION: Final = "v1.35.5+k3s1"
# The Kubernetes minor that K3S_VERSION ships; rendered manifests are validated against it.
KUBERNETES_VERSION: Final = "1.35.0"

# --- backups and the legacy estate (components/backups.py, components/fly.py) ------------------
# The one-off Fly machine that mounts a volume restored from a snapshot and streams it out as a
# tarball through the exec endpoint. Alpine 3.21 (busybox tar, gzip, base64; `set -o pipefail`).
FLY_EXPORT_IMAGE: Final = "docker.io/library/alpine:3.21.3"
# Uploads the Compose host's dumps to the backup bucket (`aws s3 cp`); AWS CLI v2, pinned release.
AWS_CLI_IMAGE: Final = "docker.io/amazon/aws-cli:2.32.2"

# --- platform on K3s (components/platform.py, charts.py, services.py, datastores.py, traffic.py) --
# Helm charts: (repository, chart, version). A bump here is the only edit an upgrade needs; the
# value paths each chart is given are asserted against these versions in tests/test_platform.py.
# cert-manager v1.21.2 (jetstack): 1.21 is the line that supports Kubernetes 1.33-1.36, so 1.35;
# 1.19 left support in June 2026. `crds.enabled` replaced `installCRDs` from v1.15.
CERT_MANAGER_CHART: Final = ("https://charts.jetstack.io", "cert-manager", "v1.21.2")
# kube-prometheus-stack 86.3.2 (prometheus-community): Prometheus Operator v0.91, Grafana 12.
KUBE_PROMETHEUS_STACK_CHART: Final = (
    "https://prometheus-community.github.io/helm-charts",
    "kube-prometheus-stack",
    "86.3.2",
)
# Loki 6.56.1 from the grafana-community fork: since 2026-03-16 (Loki chart 7.0.0) the chart in
# grafana/helm-charts serves Grafana Enterprise Logs only; OSS single-binary users moved here.
LOKI_CHART: Final = ("https://grafana-community.github.io/helm-charts", "loki", "6.56.1")
# Grafana Alloy 1.5.1 ships pod logs to Loki (Promtail reached end of life on 2026-03-02).
ALLOY_CHART: Final = ("https://grafana.github.io/helm-charts", "alloy", "1.5.1")
# Traefik is not pinned here: K3s ships it (v3.6.13 in v1.35.5+k3s1) and we only configure it
# through a HelmChartConfig, so its version moves with K3S_VERSION.

# Data stores: official images, pinned by tag (digests are added when the image is mirrored).
# Postgres 18.4: PGDATA lives under /var/lib/postgresql/18/docker, the volume is /var/lib/postgresql.
POSTGRES_IMAGE: Final = "docker.io/library/postgres:18.4"
# Redis 8.6.2 loads the RDB files of every earlier release the Compose host may have written.
REDIS_IMAGE: Final = "docker.io/library/redis:8.6.2"
# Qdrant v1.18.2, the -unprivileged build (runs as uid 1000, no root needed for the storage dir).
QDRANT_IMAGE: Final = "docker.io/qdrant/qdrant:v1.18.2-unprivileged"
# curl 8.22.0 on Alpine 3.24: `--aws-sigv4` (curl >= 7.75) reads the backups without an AWS CLI,
# busybox sha256sum/tar/gzip verify and unpack them.
RESTORE_FETCH_IMAGE: Final = "docker.io/curlimages/curl:8.22.0"
# nginx 1.30.4 (stable) unprivileged build: listens on 8080 as uid 101.
NGINX_IMAGE: Final = "docker.io/nginxinc/nginx-unprivileged:1.30.4-alpine"
# The organisation's own service images, one tag per release of the platform repository. The
# registry is a placeholder until the real one is configured; the tag is what gets bumped.
PLATFORM_IMAGE_REGISTRY: Final = "ghcr.io/example-org"
PLATFORM_RELEASE: Final = "2026.09.1"

# --- local llama servers and router (components/llama.py, components/router.py) ----------------
# llama.cpp's server image, CUDA 12 build b11312 (ghcr.io/ggml-org/llama.cpp package page), the build
# of upstream commit 0c1e57098: the llama.cpp source the tests build llama-server from and run every
# rendered command line against (LLAMA_CPP_TEST_SOURCE, scripts/build-llama-server.sh), so what the
# tests accept is what the cluster runs. Pinned by tag only for now: its digest could not be read
# offline; resolve it with `crane digest ghcr.io/ggml-org/llama.cpp:server-cuda12-b11312` and append
# `@sha256:...` here (the previous pin, b9603, was by digest). CUDA 12.8 runtime: any driver >= 525
# (CUDA minor-version compatibility), which the Lambda Stack and the workstation have; the cuda13
# variant would need a 580+ driver. The tests build the same source for the CPU, so what they cannot
# cover is the CUDA backend itself (offload, flash attention on the GPU).
LLAMA_CPP_SERVER_IMAGE: Final = "ghcr.io/ggml-org/llama.cpp:server-cuda12-b11312"
# Where the tests get that source: the llama.cpp tree vendored in the llama-cpp-python sdist on PyPI
# (the only llama.cpp source a package index serves); its CHANGELOG names the upstream commit, which
# scripts/build-llama-server.sh checks before building.
LLAMA_CPP_TEST_SOURCE: Final = {"sdist": "llama-cpp-python==0.3.36", "commit": "0c1e57098", "build": "b11312"}
# LiteLLM proxy, the non-root variant (runs as `nobody`, so the pod passes the restricted Pod
# Security profile). v1.104.8 is past 1.84.0, which fixed the Host-header authentication bypass
# GHSA-4xpc-pv4p-pm3w (CVE-2026-49468), and past the compromised PyPI 1.82.7/1.82.8
# (BerriAI/litellm#24512). Pinned by tag only: its digest could not be read offline; resolve it
# with `crane digest ghcr.io/berriai/litellm-non_root:v1.104.8` and append `@sha256:...` here.
LITELLM_IMAGE: Final = "ghcr.io/berriai/litellm-non_root:v1.104.8"

# --- NVIDIA (components/nvidia.py, components/scripts/nvidia-toolkit.sh) ---------------------
# NVIDIA k8s-device-plugin chart from NVIDIA's own Helm repository. 0.19.3 (2026-06-16) is the
# last patch of the 0.19 line; 0.20.0 is a fresh minor, adopted after its first patch release.
NVIDIA_DEVICE_PLUGIN_CHART_REPO: Final = "https://nvidia.github.io/k8s-device-plugin"
NVIDIA_DEVICE_PLUGIN_CHART: Final = "nvidia-device-plugin"
NVIDIA_DEVICE_PLUGIN_VERSION: Final = "0.19.3"
# apt version of nvidia-container-toolkit (and its libnvidia-container packages), installed only
# on hosts whose image lacks it. 1.19.1 is the patch release of the 1.19 line.
NVIDIA_CONTAINER_TOOLKIT_VERSION: Final = "1.19.1-1"
# The nvidia-smi smoke pod's image. nvidia-smi itself is mounted from the host driver; the pod
# sets NVIDIA_DISABLE_REQUIRE so this image's CUDA requirement cannot fail the plumbing check.
CUDA_SMOKE_IMAGE: Final = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
