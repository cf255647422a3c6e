"""A small pychat server following protocols.md §4: a redirect port answering bare digits, rooms that copy
every received chunk (at most 1,024 bytes) to the other members, unframed, merged or split on purpose."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class Room:
    """One room: its listener and the members that connected to it (the server's "connections")."""

    port: int
    server: asyncio.Server
    members: list[asyncio.StreamWriter] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)  # every chunk read, in order
    ever: int = 0  # members that ever connected


class PychatServer:
    """The redirect port hands out the first room with exactly one member, else a new room.

    Like the real server (and its SQLite table), a room counts a member only once that member has
    connected to it, so joins that overlap get rooms of their own. `merge_window`: chunks for one
    member are held this long and written together; `split`: every chunk read (at most 1,024
    bytes, so longer messages are cut) is written on its own, 10 ms after the previous one. A chunk with a non-ASCII byte drops its sender (the real server's
    thread for that member dies on the decode error).
    """

    def __init__(self, merge_window: float = 0.0, split: bool = False) -> None:
        self.merge_window = merge_window
        self.split = split
        self.rooms: dict[int, Room] = {}
        self.redirect: asyncio.Server | None = None
        self.port = 0
        self.redirects = 0
        self.dropped = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task] = set()
        self.pending: dict[asyncio.StreamWriter, bytearray] = {}
        self.next_free: dict[asyncio.StreamWriter, float] = {}
        self.split_gap = 0.01

    async def start(self) -> int:
        self.redirect = await asyncio.start_server(self._on_redirect, "127.0.0.1", 0)
        self.port = self.redirect.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.reset()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    def reset(self) -> None:
        """Abort every connection (RST) and stop listening."""
        servers = [self.redirect, *(room.server for room in self.rooms.values())]
        for server in servers:
            if server is not None:
                server.close()
        for writer in list(self.writers):
            writer.transport.abort()

    def occupancy(self) -> list[int]:
        """Members per room that has any, sorted."""
        return sorted(len(room.members) for room in self.rooms.values() if room.members)

    async def _track(self, writer: asyncio.StreamWriter, body) -> None:
        self.writers.add(writer)
        self.handlers.add(asyncio.current_task())
        try:
            await body
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            self.handlers.discard(asyncio.current_task())
            writer.close()

    # ---- the redirect port -------------------------------------------------------------------

    async def _on_redirect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(writer, self._redirect(reader, writer))

    async def _redirect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.redirects += 1
        room = next((r for r in self.rooms.values() if 0 < len(r.members) < 2), None)
        if room is None:
            holder: list[Room] = []
            server = await asyncio.start_server(lambda r, w: self._on_member(holder[0], r, w), "127.0.0.1", 0)
            room = Room(port=server.sockets[0].getsockname()[1], server=server)
            holder.append(room)
            self.rooms[room.port] = room
        writer.write(str(room.port).encode("ascii"))  # bare digits, no terminator
        await writer.drain()
        await reader.read()  # the socket stays open until the client closes it

    # ---- rooms -------------------------------------------------------------------------------

    async def _on_member(self, room: Room, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(writer, self._member(room, reader, writer))

    async def _member(self, room: Room, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        room.members.append(writer)
        room.ever += 1
        try:
            while chunk := await reader.read(1024):
                room.received.append(chunk)
                if not chunk.isascii():
                    self.dropped += 1
                    return
                for other in room.members:
                    if other is not writer:
                        self._forward(other, chunk)
        finally:
            if writer in room.members:
                room.members.remove(writer)

    def _forward(self, to: asyncio.StreamWriter, chunk: bytes) -> None:
        if self.merge_window > 0:
            held = self.pending.get(to)
            if held is not None:
                held.extend(chunk)
                return
            self.pending[to] = bytearray(chunk)
            asyncio.get_running_loop().call_later(self.merge_window, self._release, to)
        elif self.split:
            # Each chunk as read (a message over 1,024 bytes is two reads) goes out on its own,
            # 10 ms after the one before, so the receiver sees the server's cuts.
            loop = asyncio.get_running_loop()
            at = max(loop.time(), self.next_free.get(to, 0.0))
            self.next_free[to] = at + self.split_gap
            loop.call_at(at, self._write, to, chunk)
        else:
            self._write(to, chunk)

    def _release(self, to: asyncio.StreamWriter) -> None:
        held = self.pending.pop(to, None)
        if held:
            self._write(to, bytes(held))

    @staticmethod
    def _write(to: asyncio.StreamWriter, data: bytes) -> None:
        if not to.is_closing():
            with contextlib.suppress(Exception):
                to.write(data)
