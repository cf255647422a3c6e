"""sd_notify against a real datagram socket as NOTIFY_SOCKET, with the real daemon (`python -m bridge run`)."""

import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

from bridge.notify import Notifier
from tests.core.test_daemon import start_daemon, user, write_config


class Manager:
    """Plays systemd's side: a bound AF_UNIX datagram socket that collects what the daemon says."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address
        self.messages: list[dict[str, str]] = []

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "a message", since: int = 0) -> dict[str, str]:
        """The first message from number `since` on that matches (already received or still to come)."""
        deadline = time.monotonic() + timeout
        for message in self.messages[since:]:
            if predicate(message):
                return message
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; got {self.messages}"
            self.sock.settimeout(left)
            data = self.sock.recv(4096).decode()
            message = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(message)
            if predicate(message):
                return message

    def close(self) -> None:
        self.sock.close()


def start(tmp: Path, notify: str, **env: str) -> subprocess.Popen:
    return start_daemon(write_config(tmp), tmp, {"NOTIFY_SOCKET": notify, **env})


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def test_ready_status_watchdog_and_stopping_from_the_real_daemon(tmp_path):
    manager = Manager(str(tmp_path / "notify.sock"))
    proc = start(tmp_path, manager.address, WATCHDOG_USEC="400000")  # pings every 0.2 s
    try:
        ready = manager.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
        assert ready["STATUS"] == "0 chatting, 0 searching"
        user(tmp_path, "a", "Start")
        user(tmp_path, "b", "Start")
        manager.wait_for(lambda m: m.get("STATUS", "").startswith("2 chatting"), what="STATUS with two chatting")
        # Pings keep coming after READY, from the running loop: three more after the status change.
        seen = len(manager.messages)
        for _ in range(3):
            manager.wait_for(lambda m: m.get("WATCHDOG") == "1", what="WATCHDOG=1", since=seen)
            seen = len(manager.messages)
        assert stop(proc) == 0
        stopping = manager.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
        assert "STATUS" in stopping
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()
    order = [key for m in manager.messages for key in m if key in ("READY", "STOPPING")]
    assert order == ["READY", "STOPPING"]  # each said exactly once, in that order
    assert (tmp_path / "daemon.log").read_text().count("open files limit") == 1


def test_abstract_socket_and_a_watchdog_meant_for_another_pid(tmp_path):
    manager = Manager(f"@stranger-bridge-test-{os.getpid()}-{time.monotonic_ns()}")
    proc = start(tmp_path, manager.address, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    try:
        manager.wait_for(lambda m: m.get("READY") == "1", what="READY=1 over the abstract socket")
        assert stop(proc) == 0
        manager.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()
    # The watchdog belongs to pid 1, not to us: every message up to STOPPING came without a ping.
    assert not any("WATCHDOG" in m for m in manager.messages)


def test_soft_open_files_limit_is_raised_to_the_hard_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    assert low < hard, "this test needs a hard RLIMIT_NOFILE above 256"
    manager = Manager(str(tmp_path / "notify.sock"))
    proc = start_daemon(
        write_config(tmp_path),
        tmp_path,
        {"NOTIFY_SOCKET": manager.address},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)),
    )
    try:
        manager.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert row.split()[3:5] == [str(hard), str(hard)], row
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()
    assert f"open files limit raised from {low} to {hard}" in (tmp_path / "daemon.log").read_text()


def test_notifier_without_socket_does_nothing_and_a_gone_manager_is_no_error(tmp_path):
    assert Notifier.from_env({}).enabled is False and Notifier.from_env({}).ready() is False
    manager = Manager(str(tmp_path / "gone.sock"))
    notifier = Notifier.from_env({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "1000000"})
    assert notifier.watchdog_interval == 0.5
    assert notifier.status("multi\nline") is True
    assert manager.wait_for(lambda m: "STATUS" in m) == {"STATUS": "multi line"}  # one line, not two keys
    manager.close()
    os.unlink(tmp_path / "gone.sock")
    assert notifier.ready() is False  # the manager went away: logged once, never raised
    notifier.close()



def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already delivered to `sock`, without waiting (AF_UNIX delivers on send)."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


async def test_watchdog_pings_come_from_the_event_loop_so_a_wedged_loop_stops_them(tmp_path):
    import asyncio

    manager = Manager(str(tmp_path / "wd.sock"))
    notifier = Notifier.from_env({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "100000"})  # every 0.05 s
    task = asyncio.get_running_loop().create_task(notifier.keep_alive(lambda: "ok"))
    async def next_ping() -> None:
        # Waits on the socket itself (bounded), never on a guess of how long a ping takes.
        async with asyncio.timeout(10):
            while b"WATCHDOG=1" not in b"".join(drain(manager.sock)):
                await asyncio.sleep(0.01)

    try:
        await next_ping()  # pinging while the loop runs
        drain(manager.sock)
        # The loop is wedged: twelve intervals pass without it. Nothing can be sent meanwhile
        # only if the pings come from the loop (a thread would ping within these 0.6 s, however
        # slow the machine), so this negative check cannot pass by being too quick.
        time.sleep(0.6)
        assert drain(manager.sock) == []
        await next_ping()  # back once the loop runs again
    finally:
        task.cancel()
        notifier.close()
        manager.close()
