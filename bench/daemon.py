"""The daemon as an operator runs it, for the hardening benchmarks: `python -m bridge run -c FILE`
in its own process on a free loopback port, with its RSS, descriptor limit and /metrics figures."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Daemon", "SYSTEMD_DEFAULT_NOFILE", "free_port", "raise_own_fd_limit", "toml"]

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD_DEFAULT_NOFILE = 1024  # systemd's default soft limit for a service that sets no LimitNOFILE


def raise_own_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml(data: dict[str, Any]) -> str:
    """Tables of scalars (str, int, float, bool) and lists of them as TOML."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"not a TOML scalar: {v!r}")

    out: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(out) + "\n"


class Daemon:
    """`python -m bridge run` with the web platform and the hub on a free port (plus `extra` config).

    `nofile_soft`: the soft descriptor limit the daemon starts with (None: inherited), e.g. 1024 to
    start it as systemd does when the unit sets no LimitNOFILE. Whatever the daemon raises itself
    shows in `nofile()`.
    """

    def __init__(self, web: dict[str, Any] | None = None, bridge: dict[str, Any] | None = None,
                 *, nofile_soft: int | None = None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="sb-bench-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = Path(self.dir.name) / "state.sqlite3"
        config = {
            "bridge": {"state": str(self.state), "log_level": "WARNING", **(bridge or {})},
            # address_keys off: every load client is its own person, so the start throttle (which
            # would refuse one address's flood early) does not hide what the load costs.
            "platforms": {"web": {"plugin": "web", "bind": f"127.0.0.1:{self.port}", "address_keys": False,
                                  **(web or {})}},
            "backends": {"hub": {"plugin": "hub"}},
        }
        path = Path(self.dir.name) / "bridge.toml"
        path.write_text(toml(config))
        self.log = open(Path(self.dir.name) / "daemon.log", "w+b")  # noqa: SIM115 - kept for the process's life

        def limit() -> None:
            if nofile_soft is not None:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile_soft, hard), hard))

        env = {**os.environ, "NO_PROXY": "*"}
        env = {k: v for k, v in env.items() if not k.startswith("STRANGER_BRIDGE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(path)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=limit, env=env,
        )
        self._wait_healthy(60.0)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.get("/healthz", 1.0).startswith(b"HTTP/1.1 200"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the daemon was not healthy within {timeout:.0f} s: {self.log_tail()}")

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        """One blocking GET on a fresh connection; the whole answer (headers and body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def metric(self, name: str, timeout: float = 5.0) -> float:
        """The sum of every sample of metric `name` on /metrics (0 when absent)."""
        body = self.get("/metrics", timeout).partition(b"\r\n\r\n")[2].decode()
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def nofile(self) -> tuple[int, int]:
        """The daemon's (soft, hard) descriptor limit as the kernel sees it now."""
        with open(f"/proc/{self.proc.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return int(soft), int(hard)
        return -1, -1

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_tail(self, size: int = 2000) -> str:
        self.log.flush()
        self.log.seek(0, os.SEEK_END)
        end = self.log.tell()
        self.log.seek(max(0, end - size))
        return self.log.read().decode(errors="replace")

    def log_bytes(self) -> int:
        self.log.flush()
        return os.fstat(self.log.fileno()).st_size

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code (killed after 20 s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()
        return self.proc.returncode
