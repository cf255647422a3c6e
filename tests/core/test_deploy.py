"""Deployment files: the systemd unit verifies (the Dockerfile is checked in test_packaging.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs the systemd package"
    unit = (ROOT / "deploy" / "stranger-bridge.service").read_text()
    # Point ExecStart at this checkout's real console script so verify can check it is executable.
    script = Path(sys.executable).parent / "stranger-bridge"
    assert script.exists(), "the console script is not installed (pip install -e .)"
    unit = unit.replace("/opt/stranger-bridge/bin/stranger-bridge", str(script))
    path = tmp_path / "stranger-bridge.service"
    path.write_text(unit)
    res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines() if "stranger-bridge.service" in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
    for needle in (
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=stranger-bridge",
        "RestrictAddressFamilies=",
        "Type=notify",
        "NotifyAccess=main",
        "LimitNOFILE=65536",
    ):
        assert needle in unit
    # The daemon pings every min(5 s, WatchdogSec/2): a WatchdogSec under 10 s would ping at half of it.
    watchdog = [line for line in unit.splitlines() if line.startswith("WatchdogSec=")]
    assert len(watchdog) == 1 and int(watchdog[0].split("=", 1)[1]) >= 10

