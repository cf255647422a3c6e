"""A small pychat server following protocols.md §4 and the real server's threads: a redirect port answering
bare digits, rooms that copy every received chunk (at most 1,024 bytes) to the other members, unframed,
and a room bookkeeping that races the way the real one does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Member", "PychatServer", "Room"]


@dataclass(eq=False)
class Member:
    """One member connection and its server thread (the real server's `ServerSocket`)."""

    sock: socket.socket
    room: Room
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # merge-window buffer and its writes
    held: bytearray | None = None  # chunks held for the merge window
    eof: bool = False  # its thread read EOF (the client closed)

    def send(self, data: bytes) -> None:
        """`sendall` on the member's socket: raises OSError once the socket was closed (EBADF)."""
        self.sock.sendall(data)


@dataclass(eq=False)
class Room:
    """One room: its listener and its list of connections (which can hold members whose thread died)."""

    port: int
    listener: socket.socket
    members: list[Member] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)  # every chunk read, in order
    history: list[Member] = field(default_factory=list)  # every member that ever connected, in order


class PychatServer:
    """Threads like the real server: a redirect thread, an accept thread per room, a thread per member.

    Room bookkeeping follows the real server's table of rooms (`port → connections`): the redirect
    hands out the first room whose count is below 2, else a new room (with `late_listen`, the new
    room listens only just after its port was told, as in the real server, so a client that
    connects at once is refused). A room's count is written only once a member has connected (1 for the first, 2
    for any later one), so joins that overlap get rooms of their own. Each write to the table takes
    `commit_time` seconds (the real one is an SQLite commit).

    The cleanup race of the real server: a member's thread that reads EOF closes its socket, then
    reads the member count, writes the table (1 if others remain, else it deletes the room) and only
    then leaves the room's list. Meanwhile another member's thread that copies a chunk to the closed
    socket dies on the error, and its member is never cleaned up; and two members that leave within
    that window both see "others remain", so the room keeps a count of 1 with nobody in it. Either
    way the room is dead: the next arrival is sent there and waits alone, and the one after it gets
    a room of its own. A chunk with a non-ASCII byte, or a reset connection, kills that member's
    thread the same way (no cleanup).

    `merge_window`: chunks for one member are held this long and written together; `split`: every
    chunk read (at most 1,024 bytes, so longer messages are cut) is copied on its own, 10 ms after
    the previous one.
    """

    def __init__(
        self, merge_window: float = 0.0, split: bool = False, commit_time: float = 0.02, late_listen: bool = False
    ) -> None:
        self.merge_window = merge_window
        self.late_listen = late_listen
        self.split = split
        self.commit_time = commit_time
        self.split_gap = 0.01
        self.rooms: dict[int, Room] = {}
        self.table: dict[int, int] = {}  # the real server's tbl_ports: room port → connections
        self.port = 0
        self.redirects = 0
        self.accepted = 0  # member connections accepted, all rooms
        self.cleaned = 0  # member threads that ran their cleanup to the end
        self.deaths = 0  # member threads that died on an error (no cleanup)
        self.dropped = 0  # of those, on a non-ASCII chunk
        self.redirect: socket.socket | None = None
        self.sockets: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.stopping = False
        self.guard = threading.Lock()  # only for this class's own counters and sets, not the room logic

    async def start(self) -> int:
        self.redirect = self._listen(0)
        self.port = self.redirect.getsockname()[1]
        self._spawn(self._redirect_loop, self.redirect)
        return self.port

    async def stop(self) -> None:
        self.reset()
        threads = list(self.threads)
        await asyncio.to_thread(lambda: [t.join(5) for t in threads])

    def reset(self) -> None:
        """Abort every connection (RST) and stop listening."""
        self.stopping = True
        with self.guard:
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # wakes the thread blocked in recv/accept; it closes (RST)

    def occupancy(self) -> list[int]:
        """Members per room that has any (dead ones included, as the server sees them), sorted."""
        return sorted(len(room.members) for room in list(self.rooms.values()) if room.members)

    # ---- plumbing ----------------------------------------------------------------------------

    def _listen(self, port: int, backlog: int | None = 5) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        if backlog is not None:
            sock.listen(backlog)
        self._own(sock)
        return sock

    def _own(self, sock: socket.socket) -> None:
        with self.guard:
            self.sockets.add(sock)

    def _close(self, sock: socket.socket) -> None:
        with self.guard:
            self.sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _spawn(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def _commit(self) -> None:
        time.sleep(self.commit_time)

    # ---- the redirect port -------------------------------------------------------------------

    def _redirect_loop(self, listener: socket.socket) -> None:
        previous: socket.socket | None = None
        try:
            while not self.stopping:
                conn, _ = listener.accept()
                if previous is not None:
                    self._close(previous)  # the real server drops it at the next arrival
                previous = conn
                self._own(conn)
                if self.stopping:
                    break
                self.redirects += 1
                port = next((p for p, count in list(self.table.items()) if count < 2), None)
                room = None
                if port is None:
                    room = Room(port=0, listener=self._listen(0, backlog=None))
                    room.port = port = room.listener.getsockname()[1]
                    if not self.late_listen:
                        room.listener.listen(5)
                with contextlib.suppress(OSError):
                    conn.sendall(str(port).encode("ascii"))  # bare digits, no terminator
                if room is not None:
                    if self.late_listen:
                        room.listener.listen(5)
                    self.rooms[room.port] = room
                    self._spawn(self._room_loop, room)
        except OSError:
            pass
        finally:
            if previous is not None:
                self._close(previous)
            self._close(listener)

    # ---- rooms -------------------------------------------------------------------------------

    def _room_loop(self, room: Room) -> None:
        try:
            while not self.stopping:
                conn, _ = room.listener.accept()
                self._own(conn)
                if self.stopping:
                    self._close(conn)
                    break
                self._commit()
                self.table[room.port] = 2 if room.port in self.table else 1
                member = Member(sock=conn, room=room)
                member.thread = self._spawn(self._member, member)
                room.members.append(member)
                room.history.append(member)
                self.accepted += 1
        except OSError:
            pass
        finally:
            self._close(room.listener)

    def _member(self, member: Member) -> None:
        room = member.room
        try:
            while True:
                chunk = member.sock.recv(1024)
                if self.stopping:
                    self._close(member.sock)
                    return
                if not chunk:
                    break
                room.received.append(chunk)
                if not chunk.isascii():
                    self.dropped += 1
                    raise UnicodeDecodeError("ascii", chunk, 0, len(chunk), "not ASCII")
                self._broadcast(member, chunk)
        except (OSError, ValueError):
            if not self.stopping:
                self.deaths += 1  # the thread dies: the member stays in the room's list
            else:
                self._close(member.sock)
            return
        member.eof = True
        # EOF: close, then the racy bookkeeping (the count is read before the slow commit).
        self._close(member.sock)
        others = len(room.members) > 1
        self._commit()
        if others:
            self.table[room.port] = 1
        else:
            self.table.pop(room.port, None)
        room.members.remove(member)
        self.cleaned += 1

    def _broadcast(self, source: Member, chunk: bytes) -> None:
        for other in room_members(source.room):
            if other is source:
                continue
            if self.merge_window > 0:
                self._hold(other, chunk)
            else:
                other.send(chunk)  # an error here kills the source's thread, as in the real server
        if self.split:
            time.sleep(self.split_gap)  # each chunk read goes out on its own

    def _hold(self, to: Member, chunk: bytes) -> None:
        with to.lock:
            if to.held is not None:
                to.held.extend(chunk)
                return
            to.held = bytearray(chunk)
        timer = threading.Timer(self.merge_window, self._release, (to,))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _release(to: Member) -> None:
        with to.lock:
            held, to.held = to.held, None
            if held:
                with contextlib.suppress(OSError):
                    to.send(bytes(held))


def room_members(room: Room) -> list[Member]:
    """The room's list as the real server iterates it (a snapshot: the tests read it from another thread)."""
    return list(room.members)
