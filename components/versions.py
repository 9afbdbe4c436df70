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
