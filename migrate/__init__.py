"""Offline and real phase moves for gpu-platform: `python -m migrate --help`."""
