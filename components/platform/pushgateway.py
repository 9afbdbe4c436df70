"""The Pushgateway: where the platform's batch Jobs leave their outcome for Prometheus.

A Job ends before Prometheus can scrape it, so the scheduled backups (the case the Pushgateway
exists for: a service-level batch job's result) push theirs here, and Prometheus scrapes it with
honorLabels so the pushed {job, source} survive. Only pods labelled `PUSHER_LABEL` may push.
"""

from __future__ import annotations

from typing import Final

SERVICE: Final = "pushgateway"
PORT: Final = 9091
# On the pods allowed to push (the Pushgateway's NetworkPolicy admits them, from any namespace).
PUSHER_LABEL: Final = "gpu-platform/pushes-metrics"


def push_url(namespace: str) -> str:
    """The in-cluster URL the Jobs push to; the Pushgateway runs in the monitoring namespace."""
    return f"http://{SERVICE}.{namespace}.svc.cluster.local:{PORT}"
