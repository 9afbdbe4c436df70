"""Leaving the old estate safely: verified backups to object storage (`backups.py`), the Fly.io
apps with their export, freeze and destroy providers (`fly.py`), and the legacy GCP VM and Compose
host (`legacy.py`). Nothing here destroys before a verified backup exists. Imports: `core`,
`catalog`, `config`, `handles`, `clouds`.
"""
