"""Room state of the bot: session rooms (a room, or a thread in it), active, gone, encrypted, members, typing."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import ClassVar

from bridge.events import Start

__all__ = ["RoomState", "SessionRoom"]


@dataclass(frozen=True, slots=True)
class SessionRoom:
    """Where one session is shown: a Matrix room, or in thread mode one thread of it (`root`).

    Its text form (`format`) is the core's room id: "!room" or "!room|$root". Matrix room and
    event ids never contain "|", so `parse` is exact.
    """

    SEP: ClassVar[str] = "|"

    room: str
    root: str | None = None

    @classmethod
    def parse(cls, value: str) -> SessionRoom:
        """The session room of a core room id."""
        room, _, root = value.partition(cls.SEP)
        return cls(room, root or None)

    def format(self) -> str:
        """The core room id of this session room."""
        return f"{self.room}{self.SEP}{self.root}" if self.root else self.room


class RoomState:
    """What the bot knows about its rooms (this run, plus the active sessions a previous run left)."""

    def __init__(self) -> None:
        self.active: set[str] = set()  # session room ids with a chat (or search) going on
        self.threads: dict[str, set[str]] = collections.defaultdict(set)  # room id -> thread roots
        self.gone: set[str] = set()  # rooms we left or were removed from: nothing is sent there
        self.encrypted: set[str] = set()  # never send plaintext there
        self.plaintext: set[str] = set()  # rooms the server confirmed unencrypted (this run)
        self.members: dict[str, frozenset[str]] = {}  # joined members, refreshed on member events
        self.typing: dict[str, frozenset[str]] = {}  # room id -> users typing (not us)
        self.last_thread: dict[tuple[str, str], str] = {}  # (room, user) -> thread last written in
        self.last_start: dict[str, Start] = {}  # session room id -> the Start "next" repeats

    def closed(self, rid: str) -> bool:
        """True when nothing may be sent to the room (left, or encrypted)."""
        return rid in self.gone or rid in self.encrypted

    def add_thread(self, rid: str, root: str) -> None:
        """A thread of `rid` is a session room from now on."""
        self.threads[rid].add(root)

    def is_thread(self, rid: str, root: str) -> bool:
        """True when the thread rooted at `root` is a session room."""
        return root in self.threads.get(rid, ())

    def has_threads(self, rid: str) -> bool:
        """True when the room has thread sessions."""
        return bool(self.threads.get(rid))

    def started(self, sid: str, start: Start) -> None:
        """A session asked for a stranger: it is active, and "next" repeats `start`."""
        self.last_start[sid] = start
        self.active.add(sid)

    def end_all(self, rid: str) -> list[str]:
        """Mark every active session of the room (the room itself and its threads) ended; returns them."""
        ended = []
        for sid in [rid, *(SessionRoom(rid, t).format() for t in self.threads.get(rid, ()))]:
            if sid in self.active:
                self.active.discard(sid)
                ended.append(sid)
        return ended
