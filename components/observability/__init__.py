"""What the platform shows its operators: Grafana dashboards and Prometheus alert rules as data, and
the component that ships them to the cluster.

    series      the metric names and labels each exporter emits at its pinned version, with the source
    dashboards  the GPU, local-brain, router, cutover and data-safety dashboards (grafana-foundation-sdk)
    alerts      the alert rules per concern, thresholds from the phase files
    shipping    `Observability`: dashboards as ConfigMaps Grafana's sidecar loads, rules as PrometheusRules

Which concerns a phase shows follows what the phase runs (`concerns_for`): GPUs from the device
plugin on, the local brain and the router from p3, the cutover once traffic is split, data safety
once the stores run (their scheduled backups report, their restore Jobs ran).

Imports: `core`, `catalog`, `config`, `handles`, `cluster`, `platform`, `llm`.
"""
