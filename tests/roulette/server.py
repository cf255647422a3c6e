"""A small chat-roulette-python server following protocols.md §3, quirks included, with fault switches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field

REQUIRED = ("cmd", "uco", "session", "nonce")


@dataclass(eq=False)
class Client:
    """One registered uco."""

    uco: str
    writer: asyncio.StreamWriter
    peer: Client | None = None
    dead: bool = False
    last_pong: float = -1.0
    pings_sent: int = 0
    pongs: int = 0
    lines: list[dict] = field(default_factory=list)


class RouletteServer:
    """JSON lines on TCP; reads at most one line per `read_interval` per connection (10 lines/s).

    Defaults are the real server's: re-pair every 30 s, ping every second, dead after 7 s
    without a pong. Tests may shorten them.
    """

    def __init__(
        self,
        repair_interval: float = 30.0,
        ping_interval: float = 1.0,
        pong_timeout: float = 7.0,
        read_interval: float = 0.1,
        seed: int | None = None,
        rotate: bool = False,
    ) -> None:
        self.repair_interval = repair_interval
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.read_interval = read_interval
        self.rng = random.Random(seed)
        self.rotate = rotate  # pair in registration order, shifted by one each epoch (partners always change)
        self.epoch = 0
        self.clients: dict[str, Client] = {}
        self.deaths: list[str] = []  # ucos declared dead for want of pongs
        self.pairings: list[tuple[str, str]] = []
        self.exits_sent = 0
        self.hung = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task] = set()
        self.tasks: list[asyncio.Task] = []
        self.port = 0
        self.changed = asyncio.Condition()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._pinger()), loop.create_task(self._assoc())]
        return self.port

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, *self.tasks, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    # ---- faults ------------------------------------------------------------------------------

    def hang(self) -> None:
        """Stop reading, writing and pinging; keep every socket open (a black hole)."""
        self.hung = True

    def reset(self) -> None:
        """Abort every connection (RST) and refuse new ones."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes to every connection (malformed lines)."""
        for writer in list(self.writers):
            writer.write(data)

    def unpair_all(self) -> None:
        for client in self.clients.values():
            self._unpair(client)

    # ---- the protocol ------------------------------------------------------------------------

    def _send(self, writer: asyncio.StreamWriter, obj: dict) -> None:
        if not writer.is_closing():
            writer.write((json.dumps(obj) + "\n").encode())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        self.handlers.add(asyncio.current_task())
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                while self.hung:
                    await asyncio.sleep(3600)
                if line.strip() and not await self._on_line(line.strip(), writer):
                    break
                await asyncio.sleep(self.read_interval)  # the real server's read loop: 10 lines/s
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # stopping: end normally (a cancelled handler task is logged as an error by asyncio)
        finally:
            self.writers.discard(writer)
            self.handlers.discard(asyncio.current_task())
            for client in self.clients.values():
                if client.writer is writer:
                    client.dead = True
            writer.close()

    async def _on_line(self, line: bytes, writer: asyncio.StreamWriter) -> bool:
        """Handle one line; False closes the connection."""
        if len(line) > 32768:
            self._send(writer, {"error": "message too long"})
            return True
        try:
            js = json.loads(line)
            if not isinstance(js, dict) or any(key not in js for key in REQUIRED):
                raise KeyError("missing key")
        except (ValueError, KeyError):
            self._send(writer, {"exit": True})
            self.exits_sent += 1
            return False
        cmd = str(js["cmd"])
        uco = "".join(ch for ch in str(js["uco"])[:24] if ch.isalnum())
        client = self.clients.get(uco)
        if client is not None and client.writer is writer:
            client.lines.append(js)
        if cmd == "connect":
            if client is not None and not client.dead:
                self._send(client.writer, {"exit": True, "reason": "new session"})
                client.dead = True
                client.writer.close()
            self.clients[uco] = Client(uco=uco, writer=writer)
            self._send(writer, {"ack": str(js["nonce"])[:24]})
        elif cmd == "exit":
            if client is not None:
                client.dead = True
                self._unpair(client)
                return False
        elif cmd == "comm":
            if client is not None:
                if client.peer is None:
                    self._send(writer, {"error": "no peer", "msg": js})
                else:
                    self._send(client.peer.writer, js)
        elif cmd == "pong":
            if client is not None:
                client.dead = False
                client.last_pong = time.monotonic()
                client.pongs += 1
        else:
            self._send(writer, {"error": f"Unknown command [{cmd}]"})
        async with self.changed:
            self.changed.notify_all()
        return True

    async def _pinger(self) -> None:
        while True:
            if not self.hung:
                for client in list(self.clients.values()):
                    if not client.dead:
                        self._send(client.writer, {"cmd": "ping"})
                        client.pings_sent += 1
            await asyncio.sleep(self.ping_interval)

    def _unpair(self, client: Client) -> None:
        if client.peer is not None:
            client.peer.peer = None
        client.peer = None

    def _declare_dead(self, client: Client) -> None:
        client.dead = True
        self.deaths.append(client.uco)

    async def _assoc(self) -> None:
        last_epoch = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            if self.hung:
                continue
            now = time.monotonic()
            clients = list(self.clients.values())
            for client in clients:
                if not client.dead:
                    if client.last_pong > 0 and now - client.last_pong > self.pong_timeout:
                        self._declare_dead(client)
                    elif client.last_pong <= 0 and client.pings_sent * self.ping_interval > self.pong_timeout:
                        self._declare_dead(client)
                if client.dead or (client.peer is not None and client.peer.dead):
                    self._unpair(client)
            if now - last_epoch > self.repair_interval:
                for client in clients:
                    self._unpair(client)
                last_epoch = now
                self.epoch += 1
                continue
            free = [c for c in clients if c.peer is None and not c.dead]
            if self.rotate and free:
                shift = self.epoch % len(free)
                free = free[shift:] + free[:shift]
            while len(free) >= 2:
                p1 = free.pop(0 if self.rotate else self.rng.randrange(len(free)))
                p2 = free.pop(0 if self.rotate else self.rng.randrange(len(free)))
                p1.peer, p2.peer = p2, p1
                self._send(p1.writer, {"cmd": "pair", "uco": p2.uco})
                self._send(p2.writer, {"cmd": "pair", "uco": p1.uco})
                self.pairings.append((p1.uco, p2.uco))
            await asyncio.sleep(0.5)
