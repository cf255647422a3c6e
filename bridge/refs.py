"""One chat's bounded map of message references: core reference <-> platform message id, per side."""

from __future__ import annotations

import json
import os
import re
from types import MappingProxyType

from .hygiene import clean, cut

__all__ = ["Entry", "RefMap", "snippet"]

SNIPPET = 80  # characters of a message kept for reply quotes
MAX_ID = 256  # a platform id longer than this is not a message id: it is not kept
KEPT = SNIPPET  # characters of a message kept: its snippet is made only when it is quoted
PENDING = 8  # events held per stranger message until the platform says where it showed it
_SPACE = re.compile(r"\s+")
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps(…) with these, minus an encoder per call


def snippet(text: str) -> str:
    """A short, cleaned, one-line excerpt of `text` for a reply quote."""
    return cut(_SPACE.sub(" ", clean(text)).strip(), SNIPPET)


class Entry:
    """One message of the chat: where the room shows it, a snippet, and what was relayed about it."""

    __slots__ = ("id", "snippet", "edits", "reactions", "gone", "pending")

    def __init__(self, id: str | None, text: str | None, edits: int = 0, reactions: int = 0, gone: bool = False) -> None:
        self.id = id  # the platform's own message id (None: a stranger line not posted yet)
        self.snippet = text  # the start of the message (see `quote`); None once retracted
        self.edits = edits  # edits relayed so far
        self.reactions = reactions  # reactions relayed so far
        self.gone = gone  # retracted: no edit, reaction or quote of it any more
        self.pending: list[object] | None = None  # stranger events waiting for `Posted`

    def quote(self) -> str | None:
        """The snippet shown with a reply to this message."""
        return snippet(self.snippet) if self.snippet else None

    def hold(self, event: object) -> bool:
        """Keep `event` until the line is posted; False when the small list is full."""
        if self.pending is None:
            self.pending = []
        if len(self.pending) >= PENDING:
            return False
        self.pending.append(event)
        return True


# One side's messages by core reference, oldest first (a dict keeps insertion order, the order
# of eviction). A message nothing was done with yet (no platform id, no edit, reaction or hold)
# is kept as its bare text: no object per message, and a plain dict of strings only is not even
# tracked by the garbage collector. `RefMap.entry` turns it into an `Entry` when one is needed.
Side = dict[str, "str | Entry"]


_random = bytearray()  # os.urandom's bytes not used yet: one read per 1,024 prefixes, not a system call per chat


def _random_prefix() -> str:
    """Eight hex digits from the system's random source (secrets.token_hex(4), from a buffer)."""
    global _random
    if not _random:
        _random = bytearray(os.urandom(4096))
    prefix = _random[-4:].hex()
    del _random[-4:]
    return prefix


# What a side or the id map is until its first entry: one empty mapping that cannot be written,
# shared by every map (most chats' maps see one side only for a while, or no platform ids: a
# dict each would be three allocations per chat's first message, each counted towards the
# garbage collector's next pass). Writers swap in a dict of their own first (`_mine`, ...).
_NOTHING: Side = MappingProxyType({})  # type: ignore[assignment]


def _rows(side: Side) -> list[list[object]]:
    return [[ref, None, e, 0, 0, 0] if e.__class__ is str else [ref, e.id, e.snippet, e.edits, e.reactions, int(e.gone)]
            for ref, e in side.items()]  # fmt: skip


class RefMap:
    """The references of one chat, as seen by one session.

    Core references of this session's user's messages are handed out here: a random per-chat
    prefix and a counter, so they never collide with the partner's (whose map has its own prefix).
    Each side keeps at most `bound` messages; the oldest go first, and a reference or id that
    is no longer known is simply not found (edits of old messages are ignored, with no error).
    """

    __slots__ = ("bound", "prefix", "counter", "mine", "theirs", "by_id", "dirty", "_own")

    def __init__(self, bound: int = 256, prefix: str | None = None) -> None:
        self.bound = bound
        self.prefix = prefix or _random_prefix()
        self.counter = 0
        self._own = self.prefix + "."  # every reference this map hands out starts so
        # Dicts keep insertion order, which is the order of eviction (and take a third less
        # memory than OrderedDict at the bound).
        self.mine: Side = _NOTHING  # the user's messages, by core reference
        self.theirs: Side = _NOTHING  # the stranger's, by core reference
        self.by_id: dict[str, str] = _NOTHING  # type: ignore[assignment]  # platform id -> core reference (either side)
        self.dirty = False  # changed since it was last persisted

    def entry(self, ref: str, mine: bool) -> Entry | None:
        """The message `ref` of the user's side (`mine`) or the stranger's as an `Entry`, made from
        its bare text the first time one is needed (it keeps its place in the order); None if unknown."""
        side = self.mine if mine else self.theirs
        value = side.get(ref)
        if value.__class__ is str:
            value = side[ref] = Entry(None, value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def _mine(self) -> Side:
        side = self.mine
        if side is _NOTHING:
            side = self.mine = {}
        return side

    def _theirs(self) -> Side:
        side = self.theirs
        if side is _NOTHING:
            side = self.theirs = {}
        return side

    def _ids(self) -> dict[str, str]:
        ids = self.by_id
        if ids is _NOTHING:
            ids = self.by_id = {}
        return ids

    def new_ref(self) -> str:
        self.counter += 1
        return f"{self._own}{self.counter}"

    def add_mine(self, platform_id: str | None, text: str) -> str:
        """Record the user's message (shown in the room as `platform_id`); returns its new core reference."""
        # On every message of the hot path: new_ref and the eviction of the oldest inlined, and a
        # message the room gave no id is kept as its text alone (see `Side`).
        n = self.counter = self.counter + 1
        ref = f"{self._own}{n}"  # decimal: a little cheaper than the hex of older maps, and never one of them (see decode)
        side = self.mine if self.mine is not _NOTHING else self._mine()
        if platform_id is None or len(platform_id) > MAX_ID:
            side[ref] = text[:KEPT]
        else:
            old = self.by_id.get(platform_id)
            if old is not None:  # the platform reused an id: the older message is no longer found by it
                self._forget(old)
            side[ref] = Entry(platform_id, text[:KEPT])
            self._ids()[platform_id] = ref
        if len(side) > self.bound:
            oldest = side.pop(next(iter(side)))
            if oldest.__class__ is not str and oldest.id is not None:
                self._evicted(oldest)
        self.dirty = True
        return ref

    def add_theirs(self, ref: str | None, text: str) -> str:
        """Record a stranger's message under its core reference (a new one when the backend has none,
        or one that could be, or could become, the user's: every reference starting with this map's prefix)."""
        side = self.theirs if self.theirs is not _NOTHING else self._theirs()
        if ref is None or len(ref) > MAX_ID or ref in side or ref.startswith(self._own) or ref in self.mine:
            n = self.counter = self.counter + 1
            ref = f"{self._own}{n}"
        side[ref] = text[:KEPT]
        if len(side) > self.bound:
            oldest = side.pop(next(iter(side)))
            if oldest.__class__ is not str and oldest.id is not None:
                self._evicted(oldest)
        self.dirty = True
        return ref

    def _add(self, mine: bool, ref: str, entry: Entry) -> None:
        side = self._mine() if mine else self._theirs()
        side[ref] = entry
        if entry.id is not None:
            old = self.by_id.get(entry.id)
            if old is not None:  # the platform reused an id: the older message is no longer found by it
                self._forget(old)
            self._ids()[entry.id] = ref
        if len(side) > self.bound:
            self._evict(side)
        self.dirty = True

    def _evict(self, side: Side) -> None:
        while len(side) > self.bound:
            oldest = side.pop(next(iter(side)))
            if oldest.__class__ is not str and oldest.id is not None:
                self._evicted(oldest)

    def _evicted(self, oldest: Entry) -> None:
        # The id now names no known message, unless the platform reused it for a newer one.
        ref = self.by_id.get(oldest.id)  # type: ignore[arg-type]
        if ref is not None and ref not in self.mine and ref not in self.theirs:
            del self.by_id[oldest.id]  # type: ignore[arg-type]

    def _forget(self, ref: str) -> None:
        for side in (self.mine, self.theirs):
            entry = side.get(ref)
            if entry is not None and entry.__class__ is not str:  # bare text has no id
                entry.id = None

    def posted(self, ref: str, platform_id: str) -> Entry | None:
        """The room showed the stranger's message `ref` as `platform_id`; the entry, if still known."""
        entry = self.entry(ref, False)
        if entry is None or entry.id is not None or len(platform_id) > MAX_ID:
            return None
        old = self.by_id.get(platform_id)
        if old is not None:
            self._forget(old)
        entry.id = platform_id
        self._ids()[platform_id] = ref
        self.dirty = True
        return entry

    def by_platform(self, platform_id: str) -> tuple[str, Entry, bool] | None:
        """(core reference, entry, is the user's own) of a message the room knows as `platform_id`."""
        ref = self.by_id.get(platform_id)
        if ref is None:
            return None
        entry = self.entry(ref, True)
        if entry is not None:
            return ref, entry, True
        entry = self.entry(ref, False)
        return (ref, entry, False) if entry is not None else None

    def by_core(self, ref: str) -> Entry | None:
        """The entry of a core reference, whichever side's message it is."""
        entry = self.entry(ref, True)
        return entry if entry is not None else self.entry(ref, False)

    def is_mine(self, ref: str) -> bool:
        """Whether `ref` is one of the user's messages still known."""
        return ref in self.mine

    def __len__(self) -> int:
        return len(self.mine) + len(self.theirs)

    # ---- persistence -------------------------------------------------------------------------

    def encode(self) -> str:
        """A compact JSON form (pending events are not kept: they are moments, not state)."""
        self.dirty = False
        return _COMPACT({"p": self.prefix, "n": self.counter, "m": _rows(self.mine), "t": _rows(self.theirs)})

    @classmethod
    def decode(cls, data: str, bound: int = 256) -> RefMap:
        """Read `encode`'s form back; raises ValueError when it is not one."""
        try:
            raw = json.loads(data)
            refs = cls(bound, str(raw["p"]))
            # Maps from before were counted in hex: a new decimal reference m > n is never an old
            # hex one k <= n, since digits read in hex are never less than read in decimal.
            refs.counter = int(raw["n"])
            for key, mine in (("m", True), ("t", False)):
                for ref, pid, text, edits, reactions, gone in raw[key]:
                    if not isinstance(ref, str) or not (pid is None or isinstance(pid, str)):
                        raise ValueError("a reference or id is not a string")
                    entry = Entry(pid, None if text is None else str(text), int(edits), int(reactions), bool(gone))
                    refs._add(mine, ref, entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an encoded reference map: {exc}") from None
        refs.dirty = False
        return refs
