"""The real Pushgateway (Debian's prometheus-pushgateway), started on a 127.0.0.1 port for a test.

What the backup Jobs push (components/scripts/backup-report.sh) is proven against it: the grouping
key, the exposition the push sends and the `push_time_seconds` the Pushgateway adds per group.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.local import stop
from tests.realdb.servers import free_port
from tests.tool_versions import UnfitToolError, require


@contextmanager
def pushgateway(tmp: Path, *, persistence: bool = False, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """The Pushgateway's URL while it runs; `persistence` keeps its groups in tmp/metrics across restarts;
    `extra_args` are further flags (the ones components/platform/pushgateway.py renders)."""
    try:
        binary = require("prometheus-pushgateway")
    except UnfitToolError as exc:
        pytest.fail(str(exc))
    port = free_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    if persistence:
        argv += [f"--persistence.file={tmp / 'metrics'}", "--persistence.interval=1s"]
    argv += list(extra_args)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
                pytest.fail(f"the pushgateway exited with {proc.returncode}: {err}")
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > end:
                pytest.fail("the pushgateway was not ready within 20s")
            time.sleep(0.1)
        yield url
    finally:
        stop(proc)
