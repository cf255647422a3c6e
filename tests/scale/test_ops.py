"""Operations files of scale-out: the systemd template unit verifies, the two-instance example checks and runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bridge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "two-instances"


def test_systemd_template_unit_verifies_for_an_instance(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs the systemd package"
    unit = (ROOT / "deploy" / "stranger-bridge@.service").read_text()
    script = Path(sys.executable).parent / "stranger-bridge"
    assert script.exists(), "the console script is not installed (pip install -e .)"
    (tmp_path / "stranger-bridge@.service").write_text(unit.replace("/opt/stranger-bridge/bin/stranger-bridge", str(script)))
    res = subprocess.run([analyze, "verify", str(tmp_path / "stranger-bridge@web1.service")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    problems = [line for line in (res.stdout + res.stderr).splitlines() if "stranger-bridge@" in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
    for needle in ("-c /etc/stranger-bridge/%i.toml", "STRANGER_BRIDGE_BRIDGE__INSTANCE=%H-%i", "StateDirectory=stranger-bridge/%i", "Type=notify"):
        assert needle in unit
    # Everything else is the single-instance unit's (hardening, watchdog, limits).
    single = (ROOT / "deploy" / "stranger-bridge.service").read_text()
    hardening = single[single.index("# Hardening"):single.index("[Install]")]
    assert hardening in unit


def test_two_instance_example_configs_check_and_share_one_store():
    for name in ("web1", "web2"):
        res = subprocess.run([sys.executable, "-m", "bridge", "check-config", "-c", str(EXAMPLE / f"{name}.toml")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr
    one, two = (load_config(EXAMPLE / f"{name}.toml", env=False) for name in ("web1", "web2"))
    assert one.bridge.store == two.bridge.store and one.bridge.store_url.is_redis
    assert (one.bridge.instance, two.bridge.instance) == ("web1", "web2")
    compose = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "web1", "web2"}
    assert "--appendonly" in services["redis"]["command"]
    for name in ("web1", "web2"):
        mount = services[name]["volumes"][0]
        assert mount.split(":")[0] == f"./{name}.toml" and (EXAMPLE / f"{name}.toml").exists()
        assert one.bridge.store_url.host == "redis"  # the compose service name
