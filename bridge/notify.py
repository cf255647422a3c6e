"""systemd's notify protocol (sd_notify): READY, STOPPING, STATUS and watchdog pings over NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager. Without NOTIFY_SOCKET (not under systemd) it does nothing.

    The socket is an AF_UNIX datagram socket; a name starting with "@" is in the abstract namespace.
    Sending never blocks the event loop and a failure is logged, never raised: the daemon must not
    die because the manager is slow to read.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address: str | bytes | None = None
        self.watchdog_interval: float | None = None  # seconds between pings (half of WatchdogSec)
        self._sock: socket.socket | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        if self._sock is not None and watchdog_usec and watchdog_usec > 0:
            self.watchdog_interval = watchdog_usec / 1e6 / 2
        self._failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the watchdog is ours only if the pid is)."""
        env = os.environ if env is None else env
        usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        if env.get("WATCHDOG_USEC", "").isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(env["WATCHDOG_USEC"])
        return cls(env.get("NOTIFY_SOCKET") or None, usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        """Send "KEY=value" lines as one datagram; True when it went out."""
        if self._sock is None or self.address is None:
            return False
        data = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            self._sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:  # said once: a manager that went away stays away
                log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET", "?"), exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *((f"STATUS={status}",) if status else ()))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    async def keep_alive(self, status: Callable[[], str], every: float = 5.0) -> None:
        """Until cancelled: WATCHDOG=1 every WatchdogSec/2 (sent from the event loop, so a wedged
        loop stops pinging and systemd restarts the daemon), and STATUS= when it changes."""
        if self._sock is None:
            return
        interval = min(every, self.watchdog_interval) if self.watchdog_interval else every
        last = None
        while True:
            text = status()
            lines = ["WATCHDOG=1"] if self.watchdog_interval else []
            if text != last:
                lines.append(f"STATUS={text}")
            if lines and self.send(*lines):
                last = text
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
