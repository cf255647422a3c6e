"""The listening socket: per-address and total connection caps, and the site that applies them."""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from collections.abc import Callable

from aiohttp import web

__all__ = ["ConnectionGate", "FD_RESERVE", "GatedSite", "descriptor_budget"]


FD_RESERVE = 64  # descriptors kept free of HTTP connections (store, backends, other platforms)


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


class _Gated(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate: a refused one is reset at once
    (its descriptor is free again before the next accept) and never reaches aiohttp."""

    __slots__ = ("gate", "inner", "peer")

    def __init__(self, gate: ConnectionGate, inner: asyncio.Protocol) -> None:
        self.gate = gate
        self.inner = inner
        self.peer: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        name = transport.get_extra_info("peername")
        peer = str(name[0]) if isinstance(name, tuple) and name else "unknown"
        if not self.gate.admit(peer):
            transport.abort()
            return
        self.peer = peer
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.gate.release(self.peer)
            self.peer = None
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.peer is not None else None

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.inner.resume_writing()


class GatedSite(web.BaseSite):
    """A TCP site whose connections pass a ConnectionGate (aiohttp's TCPSite has no such hook)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate, *, backlog: int) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        shown = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{shown}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        gate = self._gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(gate, server()), self._host, self._port, backlog=self._backlog, reuse_address=True
        )
