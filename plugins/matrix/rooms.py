"""Room state of the bot: session rooms (a room, or a thread in it), active, gone, encrypted, members, typing."""

from __future__ import annotations

from typing import NamedTuple

from bridge.dedupe import SeenIds
from bridge.events import Start

__all__ = ["RoomState", "SessionRoom", "server_of"]


class SessionRoom(NamedTuple):
    """Where one session is shown: a Matrix room, or in thread mode one thread of it (`root`).

    Its text form (`format`, also its str) is the core's room id: "!room" or "!room|$root". Matrix
    room and event ids never contain "|", so `parse` is exact. A tuple: every outbound event looks
    its outbox up by it, and a tuple's hash and equality are the interpreter's own (a dataclass's
    are Python calls).
    """

    room: str
    root: str | None = None
    SEP = "|"  # not a field (no annotation)

    @classmethod
    def parse(cls, value: str) -> SessionRoom:
        """The session room of a core room id."""
        room, _, root = value.partition(cls.SEP)
        return cls(room, root or None)

    def format(self) -> str:
        """The core room id of this session room."""
        return f"{self.room}{self.SEP}{self.root}" if self.root else self.room

    __str__ = format  # names the room's outbox task and log lines, as the core names the room


def server_of(mxid: str) -> str:
    """The homeserver name of a Matrix id ("@alice:example.org" → "example.org"), for server bans."""
    return mxid.partition(":")[2].lower()


class RoomState:
    """What the bot knows about its rooms (this run, plus the active sessions a previous run left).

    Live sessions (`active`) and the rooms someone types in are kept while they last; everything
    else (ended threads and their last Start, rooms left or encrypted, caches) is bounded to the
    newest `limit` entries of each kind, so memory follows live chats, not churn.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.active: set[str] = set()  # session room ids with a chat (or search) going on
        self.threads: SeenIds[tuple[str, str], None] = SeenIds(limit)  # (room, root) of thread sessions
        self.thread_rooms: SeenIds[str, None] = SeenIds(limit)  # rooms that have (had) thread sessions
        self.gone: SeenIds[str, bool] = SeenIds(limit)  # True: left or removed, nothing is sent there
        self.encrypted: SeenIds[str, None] = SeenIds(limit)  # never send plaintext there
        self.plaintext: SeenIds[str, None] = SeenIds(limit)  # the server confirmed them unencrypted
        self.members: SeenIds[str, frozenset[str]] = SeenIds(limit)  # joined members (None: to be fetched)
        self.typing: dict[str, frozenset[str]] = {}  # room id -> users typing now (not us)
        self.last_thread: SeenIds[tuple[str, str], str] = SeenIds(limit)  # (room, user) -> thread last written in
        self.last_start: SeenIds[str, Start] = SeenIds(limit)  # session room id -> the Start "next" repeats

    def closed(self, rid: str) -> bool:
        """True when nothing may be sent to the room (left, or encrypted)."""
        return bool(self.gone.get(rid, False)) or rid in self.encrypted  # (is_gone inlined: asked per request)

    def is_gone(self, rid: str) -> bool:
        """True when the bot left the room or was removed from it."""
        return bool(self.gone.get(rid, False))

    def left(self, rid: str) -> None:
        """The bot left or was removed from the room."""
        self.gone.remember(rid, True)

    def joined(self, rid: str) -> None:
        """The bot joined the room (again): it may be written to, its members are fetched anew."""
        if rid in self.gone:
            self.gone.remember(rid, False)
        self.forget_members(rid)

    def forget_members(self, rid: str) -> None:
        """The room's membership changed: fetch it again when needed."""
        if rid in self.members:
            self.members.remember(rid, None)

    def add_thread(self, rid: str, root: str) -> None:
        """A thread of `rid` is a session room from now on."""
        self.threads.remember((rid, root))
        self.thread_rooms.remember(rid)

    def is_thread(self, rid: str, root: str) -> bool:
        """True when the thread rooted at `root` is (or recently was) a session room."""
        return SessionRoom(rid, root).format() in self.active or (rid, root) in self.threads

    def has_threads(self, rid: str) -> bool:
        """True when the room has (or recently had) thread sessions."""
        return rid in self.thread_rooms

    def started(self, sid: str, start: Start) -> None:
        """A session asked for a stranger: it is active, and "next" repeats `start`."""
        self.last_start.remember(sid, start)
        self.active.add(sid)

    def set_typing(self, rid: str, users: frozenset[str]) -> None:
        """Who types in the room now (rooms where nobody types are not kept)."""
        if users:
            self.typing[rid] = users
        else:
            self.typing.pop(rid, None)

    def end_all(self, rid: str) -> list[str]:
        """Mark every active session of the room (the room itself and its threads) ended; returns them."""
        ended = sorted(sid for sid in self.active if SessionRoom.parse(sid).room == rid)
        self.active.difference_update(ended)
        return ended
