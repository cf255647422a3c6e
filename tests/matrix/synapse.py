"""A real Synapse homeserver for tests: started in a temp dir on a free port, users registered by shared secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.ports import free_port

SECRET = "test-registration-secret"
RELAXED = {"per_second": 1000, "burst_count": 1000}
RC_KEYS = (
    "rc_message",
    "rc_registration",
    "rc_joins",
    "rc_joins_per_room",
    "rc_invites",
    "rc_3pid_validation",
    "rc_admin_redaction",
    "rc_presence",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
)


class Synapse:
    """One Synapse process. `start()` waits until it answers; `kill()` kills its process group."""

    def __init__(self, directory: Path, *, relaxed: bool = True, appservices: list[Path] | None = None) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.relaxed = relaxed
        self.appservices = appservices or []
        self.proc: subprocess.Popen | None = None
        self.config_path = directory / "homeserver.json"

    def write_config(self) -> None:
        d = self.dir
        cfg: dict[str, Any] = {
            "server_name": "localhost",
            "public_baseurl": self.url + "/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "pid_file": str(d / "homeserver.pid"),
            "log_config": str(d / "log.yaml"),
            "registration_shared_secret": SECRET,
            "macaroon_secret_key": "test-macaroon-secret",
            "form_secret": "test-form-secret",
            "report_stats": False,
            "enable_registration": False,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "app_service_config_files": [str(p) for p in self.appservices],
        }
        if self.relaxed:
            for key in RC_KEYS:
                cfg[key] = dict(RELAXED)
            cfg["rc_login"] = {"address": RELAXED, "account": RELAXED, "failed_attempts": RELAXED}
            cfg["rc_joins"] = {"local": RELAXED, "remote": RELAXED}  # nested: the flat form is ignored
        d.mkdir(parents=True, exist_ok=True)
        (d / "media").mkdir(exist_ok=True)
        (d / "log.yaml").write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(d / "homeserver.log"),
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        self.config_path.write_text(json.dumps(cfg))

    def start(self, timeout: float = 60.0) -> None:
        if not self.config_path.exists():
            self.write_config()
        out = open(self.dir / "stdout.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/_matrix/client/versions", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"Synapse did not answer within {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        parts = []
        for name in ("stdout.log", "homeserver.log"):
            p = self.dir / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    # ---- admin API ---------------------------------------------------------------------------

    def register(self, username: str, password: str = "pw", admin: bool = False) -> dict[str, Any]:
        """Register a user with the shared-secret admin API; returns the answer (access_token, user_id)."""
        url = self.url + "/_synapse/admin/v1/register"
        with urllib.request.urlopen(url, timeout=10) as r:
            nonce = json.load(r)["nonce"]
        mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\0".join([nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]))
        body = json.dumps(
            {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac.hexdigest()}
        ).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
