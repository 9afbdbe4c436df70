"""The clouds' APIs: the Lambda Cloud and Fly.io Machines clients (`lambda_api.py`, `fly_api.py`,
each shaped by the published spec), the Lambda dynamic providers (`lambda_cloud.py`), and GCP
compute resources registered lazily (`gcp_compute.py`). Imports: `core`, `catalog`.
"""
