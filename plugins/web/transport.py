"""The listening socket: per-address and total connection caps, and the site that applies them."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import resource
import socket
from collections import Counter
from collections.abc import Callable

from aiohttp import web

__all__ = ["ACCEPTS_PER_WAKE", "ACCEPT_PAUSE", "ConnectionGate", "FD_RESERVE", "GatedSite", "descriptor_budget"]

FD_RESERVE = 64  # descriptors kept free of HTTP connections (store, backends, other platforms)
ACCEPTS_PER_WAKE = 128  # connections taken per wake-up of a listening socket (others wait their turn)
ACCEPT_PAUSE = 0.5  # seconds accepting pauses when descriptors (or buffers) run out
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def descriptor_budget(reserve: int = FD_RESERVE) -> int:
    """How many connections fit under the soft descriptor limit, keeping `reserve` free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(16, soft - reserve)


class ConnectionGate:
    """Counts open connections per peer address and in total; refuses those beyond a cap."""

    def __init__(self, per_address: int | None, total: int, on_refused: Callable[[str], None]) -> None:
        self.per_address = per_address  # None: not counted per address (behind a trusted proxy)
        self.total = total
        self.on_refused = on_refused
        self.open = Counter[str]()
        self.count = 0

    def admit(self, peer: str) -> bool:
        if self.count >= self.total:
            self.on_refused("connections")
            return False
        if self.per_address is not None and self.open[peer] >= self.per_address:
            self.on_refused("connections_per_address")
            return False
        self.open[peer] += 1
        self.count += 1
        return True

    def release(self, peer: str) -> None:
        self.count -= 1
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one admitted connection: gives its place in the gate back when it
    closes, and closes it when its first request head is not complete within `head_timeout`
    (later heads on a kept-alive connection are bounded by aiohttp's keepalive_timeout)."""

    __slots__ = ("gate", "inner", "peer", "head_timeout", "deadline", "tail")

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol, peer: str, head_timeout: float) -> None:
        self.gate = gate
        self.inner = inner
        self.peer: str | None = peer
        self.head_timeout = head_timeout
        self.deadline: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen of the first head (its end may span two reads)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(self.head_timeout, self._too_slow, transport)
        self.inner.connection_made(transport)

    def _too_slow(self, transport: asyncio.BaseTransport) -> None:
        self.deadline = None
        self.gate.on_refused("slow_head")
        transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.peer is not None:
            self.gate.release(self.peer)
            self.peer = None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.deadline is not None:
            if b"\r\n\r\n" in self.tail + data[:4] or b"\r\n\r\n" in data:
                self.deadline.cancel()
                self.deadline = None
            else:
                self.tail = (self.tail + data)[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _numeric_infos(host: str, port: int) -> list[tuple] | None:
    """getaddrinfo's answer for a numeric address (most binds), asked here: it needs no name
    look-up, so no executor thread (and its modules) and no IDNA codec (the host is passed as
    bytes) is started for it: 0.6 MB of the process's memory. None for a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    flags = socket.AI_PASSIVE | socket.AI_NUMERICHOST
    return socket.getaddrinfo(host.encode("ascii"), port, type=socket.SOCK_STREAM, flags=flags)


class _Listening:
    """The listening sockets, shaped as the asyncio server aiohttp's runner expects (`sockets`, `close`)."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class GatedSite(web.BaseSite):
    """A TCP site with its own accept loop (aiohttp's TCPSite and asyncio's loop have no such hook).

    A connection beyond the gate's caps is closed right after `accept`, before any transport or
    protocol exists, so refusing thousands a second stays cheap. When descriptors run out, accepting
    pauses for ACCEPT_PAUSE seconds and `on_exhausted` is called once (asyncio itself would log and
    reschedule once per pending connection, every second)."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate, *, backlog: int,
        head_timeout: float, on_exhausted: Callable[[OSError], None],
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._head_timeout = head_timeout
        self._host = host
        self._port = port
        self._gate = gate
        self._on_exhausted = on_exhausted
        self._listening: list[socket.socket] = []
        self._paused: asyncio.TimerHandle | None = None
        self._opening: set[asyncio.Task] = set()

    @property
    def name(self) -> str:
        shown = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{shown}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = _numeric_infos(self._host, self._port) or await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._listening.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
        except OSError:
            for sock in self._listening:
                sock.close()
            raise
        self._server = _Listening(self._listening)  # type: ignore[assignment]  # what runner.addresses reads
        self._serve()

    async def stop(self) -> None:
        self._unserve()
        if self._paused is not None:
            self._paused.cancel()
        await super().stop()

    def _serve(self) -> None:
        self._paused = None
        loop = asyncio.get_running_loop()
        for sock in self._listening:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _unserve(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._listening:
            loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._unserve()
                    self._paused = asyncio.get_running_loop().call_later(ACCEPT_PAUSE, self._serve)
                    self._on_exhausted(exc)
                    return
                raise
            peer = str(address[0]) if isinstance(address, tuple) and address else "unknown"
            if not self._gate.admit(peer):
                conn.close()
                continue
            conn.setblocking(False)
            task = asyncio.get_running_loop().create_task(self._open(conn, peer))
            self._opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task) -> None:
        opening = self._opening
        opening.discard(task)
        if not opening:
            opening.clear()  # an emptied set keeps the table of its largest size (thousands at once): given back

    async def _open(self, conn: socket.socket, peer: str) -> None:
        server = self._runner.server
        try:
            assert server is not None
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _Counted(self._gate, server(), peer, self._head_timeout), conn
            )
        except BaseException:
            self._gate.release(peer)  # the transport never came to be: its place is free again
            conn.close()
            raise
