"""The rich relay's bookkeeping (pure): relations read from user events, and bounded maps of our rooms' event ids."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bridge.bucket import TokenBucket
from bridge.dedupe import SeenIds

__all__ = [
    "EDITS_PER_MESSAGE",
    "KEEP",
    "Ours",
    "Pending",
    "REACTIONS_PER_MESSAGE",
    "Relations",
    "Shown",
    "UserLine",
    "UserReaction",
    "annotation_of",
    "posted_id",
    "redacted_of",
    "relation_of",
    "split_id",
]

KEEP = 10_000  # entries of each map (user messages, stranger lines, reactions): bounds memory over churn
EDITS_PER_MESSAGE = 20  # edits relayed per message, each way; later ones are ignored
REACTIONS_PER_MESSAGE = 20  # reaction keys our side puts on one message; more are ignored
REACTION_RATE = 5.0  # reactions a second one Matrix user may hand in, sustained
REACTION_BURST = 20
ID_SEP = "|"  # "$event|2": the third message merged into one event (event ids never hold "|")
_EVENT_ID = re.compile(r"\$[^\s|]{1,254}")


def _event_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _EVENT_ID.fullmatch(value) else None


def relation_of(content: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(edited event, replied-to event, thread root) of a message content; None where absent.

    A thread's own fallback reply (`is_falling_back`) is no reply.
    """
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None, None, None
    rel = relates.get("rel_type")
    if rel == "m.replace":
        return _event_id(relates.get("event_id")), None, None
    reply = relates.get("m.in_reply_to")
    reply_to = _event_id(reply.get("event_id")) if isinstance(reply, dict) else None
    if rel == "m.thread":
        root = _event_id(relates.get("event_id"))
        return None, None if relates.get("is_falling_back") is True else reply_to, root
    return None, reply_to, None


def annotation_of(content: Any) -> tuple[str, str] | None:
    """(target event, key) of an m.reaction content, or None when it is not a well-formed annotation."""
    relates = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return None
    target, key = _event_id(relates.get("event_id")), relates.get("key")
    if target is None or not isinstance(key, str) or not key or len(key) > 256:
        return None
    return target, key


def redacted_of(ev: dict[str, Any]) -> str | None:
    """The event an m.room.redaction removes (`redacts` at the top, or in the content from room v11)."""
    content = ev.get("content") if isinstance(ev.get("content"), dict) else {}
    return _event_id(ev.get("redacts")) or _event_id(content.get("redacts"))


def posted_id(event: str, index: int) -> str:
    """Our message id for the core: the event, or the `index`-th message merged into it."""
    return event if index == 0 else f"{event}{ID_SEP}{index}"


def split_id(value: str) -> tuple[str, int]:
    """The inverse of posted_id: (event id, index); index 0 for a plain event id."""
    event, sep, index = value.partition(ID_SEP)
    return (event, int(index)) if sep and index.isdigit() else (event, 0)


@dataclass(slots=True)
class UserLine:
    """A user's message we handed to the core (its event id is its ref)."""

    sid: str
    sender: str
    edits: int = 0


@dataclass(frozen=True, slots=True)
class UserReaction:
    """A user's reaction we handed to the core: its redaction removes it on the other side."""

    sid: str
    ref: str
    key: str


@dataclass(slots=True)
class Shown:
    """A stranger's line we posted: the events it took, and the messages merged into it (None: retracted)."""

    sid: str
    label: str | None  # the speaker (bot mode: the attribution)
    sender: str | None  # the ghost that posted it (None: the bot)
    texts: list[str | None]
    parts: list[str] = field(default_factory=list)  # event ids; parts[0] is the one edits replace
    quote: str | None = None  # a reply's quote, kept when the line is edited
    reply_to: str | None = None
    edits: int = 0
    image: bool = False  # an image (and its caption): retracted, never edited


@dataclass(slots=True)
class Ours:
    """A reaction our side (the bot or a ghost) shows: the strangers that hold it, and its event once sent."""

    labels: set[str | None]
    event: str | None = None


class Pending(NamedTuple):
    """A stranger text waiting in the outbox, in order: its core ref (None: not referenced) and text.
    (A tuple: one is made for every stranger message; a frozen dataclass is slower to build.)"""

    ref: str | None
    text: str


class Relations:
    """Bounded maps: user events we relayed, stranger lines and reactions we posted, reaction rates."""

    def __init__(self, keep: int = KEEP) -> None:
        self.users: SeenIds[str, UserLine] = SeenIds(keep)  # user message event id -> line
        self.lines: SeenIds[str, Shown] = SeenIds(keep)  # event id (each part) of a stranger line -> line
        self.reactions: SeenIds[str, UserReaction] = SeenIds(keep)  # a user's reaction event id -> reaction
        self.ours: SeenIds[tuple[str, str, str, str | None], Ours] = SeenIds(keep)  # (room, target, key, sender)
        self.per_target: SeenIds[tuple[str, str], int] = SeenIds(keep)  # our reaction keys per (room, target)
        self.buckets: SeenIds[str, TokenBucket] = SeenIds(keep)  # reactions per user mxid
        self.limited: SeenIds[str, bool] = SeenIds(keep)  # True: the session room was told of dropped reactions
        self.pending: dict[Any, list[Pending]] = {}  # outbox room -> texts waiting, in queue order

    def sid_of(self, target: str) -> str | None:
        """The session room a known event belongs to (a user message or a stranger line)."""
        line = self.users.get(target)
        if line is not None:
            return line.sid
        shown = self.lines.get(target)
        return shown.sid if shown is not None else None

    def ref_of(self, target: str) -> str:
        """The id the core knows for an event of the room: a stranger line's first event, else the event."""
        shown = self.lines.get(target)
        return shown.parts[0] if shown is not None and shown.parts else target

    def reaction_allowed(self, sender: str, sid: str) -> tuple[bool, bool]:
        """(relay it, tell the room now): a user's reactions are bounded per second; the room is told
        once per burst that some were not sent."""
        bucket = self.buckets.get(sender)
        if bucket is None:
            bucket = TokenBucket(REACTION_RATE, REACTION_BURST)
            self.buckets.remember(sender, bucket)
        if bucket.allow():
            if self.limited.get(sid, False):
                self.limited.remember(sid, False)  # the next burst is told again
            return True, False
        if self.limited.get(sid, False):
            return False, False
        self.limited.remember(sid, True)
        return False, True

    def queued(self, room: Any, ref: str | None, text: str) -> None:
        """A stranger text went into `room`'s outbox (texts leave in this order, maybe merged)."""
        self.pending.setdefault(room, []).append(Pending(ref, text))

    def take(self, room: Any, count: int) -> list[Pending]:
        """The `count` oldest waiting texts of `room`: the one outbox item just posted or given up."""
        waiting = self.pending.get(room, [])
        taken, rest = waiting[:count], waiting[count:]
        if rest:
            self.pending[room] = rest
        else:
            self.pending.pop(room, None)
        return taken

    def drop_room(self, rid: str, room_of: Any) -> None:
        """The outboxes of Matrix room `rid` were dropped: their waiting texts will never be posted."""
        for room in [r for r in self.pending if room_of(r) == rid]:
            del self.pending[room]
