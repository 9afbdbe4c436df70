"""tests/real/tools.py `read_only_root`, run for real: the mount namespace the router test runs LiteLLM
in, as root directly and as any other user through sudo (GitHub's runners), with the program back
under the caller's own uid and environment either way."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.real.tools import read_only_root

PROBE = (
    'id -u > /tmp/uid; printf %s "$GREETING" > /tmp/greeting; cat /mnt/config.yaml > /tmp/config; '
    "touch /not-here 2>> /tmp/errors || true; touch /mnt/config.yaml 2>> /tmp/errors || true; "
    "ls /tmp > /tmp/listing; cat KEPT/file > /tmp/kept-file; touch KEPT/new 2>> /tmp/errors || true"
)


def test_the_program_runs_as_the_caller_on_a_read_only_root(tmp_path: Path) -> None:
    scratch, config, kept = tmp_path / "pod-tmp", tmp_path / "pod-etc", tmp_path / "kept"
    for d in (scratch, config, kept):
        d.mkdir()
    (config / "config.yaml").write_text("model_list: []\n")
    (kept / "file").write_text("the image's file\n")
    # `kept` lives under /tmp here (pytest's tmp_path): it must stay visible at its own path.
    probe = PROBE.replace("KEPT", str(kept.resolve()))
    argv = read_only_root(
        ["sh", "-c", probe], env={"GREETING": "hello there", "PATH": "/usr/bin:/bin"}, scratch=scratch,
        config_dir=config, config_at="/mnt", keep=[kept],
    )  # fmt: skip
    assert "hello there" not in argv  # the environment travels in a file, not on the command line
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr

    assert (scratch / "uid").read_text().strip() == str(os.getuid())
    assert (scratch / "greeting").read_text() == "hello there"
    assert (scratch / "config").read_text() == "model_list: []\n"
    assert (scratch / "kept-file").read_text() == "the image's file\n"
    errors = (scratch / "errors").read_text()
    assert errors.count("Read-only file system") == 3, errors  # the root, the config and the kept folder
    assert not Path("/not-here").exists()
    # The program's /tmp was the scratch folder, not the machine's /tmp.
    assert set((scratch / "listing").read_text().split()) >= {"uid", "greeting", "config"}
