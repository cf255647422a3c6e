"""Free ports for the servers a test starts: below the kernel's ephemeral range, a share of it per xdist worker."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

__all__ = ["free_port"]

SPAN = 12000  # ports below the ephemeral range that tests draw from


def _range() -> tuple[int, int]:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start = max(1024, low - SPAN)
    # Under pytest-xdist each worker ("gw0", "gw1", ...) draws from its own slice, so two workers
    # never pick the same port between one's check and its server's bind.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    share = (low - start) // count
    return start + share * (index % count), start + share * (index % count + 1)


def free_port() -> int:
    """A port nothing listens on now. Below the ephemeral range, so no client connection's own port
    takes it in the moment before the server it is meant for listens on it (bind(0) ports can be)."""
    low, high = _range()
    for _ in range(200):
        port = random.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
