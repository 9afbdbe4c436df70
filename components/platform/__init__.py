"""Everything in the cluster that is not the LLM: the Helm releases (`charts.py`), the data
stores and their restore Jobs (`datastores.py`), the platform's services from the catalog's table
(`services.py`), the traffic split between K3s and the legacy hosts (`traffic.py`), the `Platform`
component that assembles them (`platform.py`), and the Kubernetes helpers every in-cluster
component shares (`kube.py`). Imports: `core`, `catalog`, `config`, `handles`, `cluster`.
"""
