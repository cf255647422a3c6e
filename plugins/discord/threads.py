"""Session threads: who owns which, the options of their last start, and their persistence."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from bridge.abc import KeyValue
from bridge.dedupe import SeenIds

from .shards import Shards

__all__ = ["SHOWN_KEPT", "ThreadInfo", "Threads"]

SHOWN_KEPT = 64

log = logging.getLogger(__name__)


@dataclass
class ThreadInfo:
    """A session thread (or DM channel), persisted so a restart never opens a second one."""

    id: int
    owner: int
    guild: int | None
    parent: int | None  # the text channel the thread hangs off; None in DMs
    last_seen: int = 0  # the newest user message handed to the core: catch-up starts after it
    start: dict = field(default_factory=dict)  # the options of the last start, reused by "next"
    # Stranger lines shown in more than one message, or merged with others into one: first message
    # id -> [lines in it, the later parts' ids...], so a deletion after a restart removes every
    # part (the newest SHOWN_KEPT; the core keeps the other side of the map).
    shown: dict[str, list[int]] = field(default_factory=dict)
    restarting: bool = False  # a Start was submitted: the USER Disconnected that follows is "next"
    catching_up: bool = False
    pending: list = field(default_factory=list)  # live messages held while catching up

    def dump(self) -> str:
        # Written out (not dataclasses.asdict, which deep-copies): a thread's record is written
        # after every message of its owner. Same keys, in field order.
        return json.dumps({
            "id": self.id, "owner": self.owner, "guild": self.guild, "parent": self.parent,
            "last_seen": self.last_seen, "start": self.start, "shown": self.shown,
        })  # fmt: skip

    @classmethod
    def load(cls, raw: str) -> ThreadInfo:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def keep_shown(self, first: int, lines: int, later: list[int]) -> None:
        """Remember how a stranger line was shown (only when it took several messages or lines)."""
        self.shown[str(first)] = [lines, *later]
        while len(self.shown) > SHOWN_KEPT:
            del self.shown[next(iter(self.shown))]


class Threads:
    """The open session threads (and DM rooms) by id and by owner, written through to the state."""

    def __init__(self, state: KeyValue, remember: int = 4096, shards: Shards | None = None) -> None:
        self.state = state
        # Processes of one token share the state: each writes only its own shards' lists and counter.
        self.shards = shards or Shards()
        self._lists = self.shards.keys("threads")
        self._counter = self.shards.key("counter")
        self.by_id: dict[int, ThreadInfo] = {}
        self.by_user: dict[int, int] = {}
        # Threads archived, left or deleted: nothing more is posted there. Only the newest are kept:
        # an old one's session ended long ago, so nothing is delivered to it any more.
        self.gone: SeenIds[int, None] = SeenIds(remember)
        # The parent channel of each thread, kept after its chat ended until its outbox is done:
        # what is still queued for it is posted through its channel's webhook all the same.
        self.parents: dict[int, int] = {}
        self.counter = 0  # the number of the last thread opened (its name)
        self._dirty: set[int] = set()
        # The thread lists change only when a thread is added or forgotten: a user's message
        # (last_seen) rewrites its own record, not the lists of every open thread.
        self._lists_changed = False
        self._wake = asyncio.Event()
        self._loaded = False

    # ---- lookups -----------------------------------------------------------------------------

    def get(self, tid: int) -> ThreadInfo | None:
        return self.by_id.get(tid)

    def __contains__(self, tid: object) -> bool:
        return tid in self.by_id

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.by_id))

    def infos(self) -> list[ThreadInfo]:
        """Every open thread's record."""
        return list(self.by_id.values())

    def of_user(self, user: int) -> int | None:
        """The thread id of `user`'s open chat, if any."""
        return self.by_user.get(user)

    def in_guild(self, guild: int | None) -> int:
        """How many session threads are open in one guild."""
        return sum(1 for t in self.by_id.values() if t.guild == guild)

    # ---- changes -----------------------------------------------------------------------------

    def mark_gone(self, tid: int) -> None:
        """Post nothing more in this thread."""
        self.gone.remember(tid)

    def add(self, info: ThreadInfo) -> None:
        self.by_id[info.id] = info
        self.by_user[info.owner] = info.id
        self._lists_changed = True
        if info.parent is not None:
            self.parents[info.id] = info.parent

    def parent_of(self, tid: int) -> int | None:
        """The text channel a thread hangs off (also shortly after its chat ended); None in DMs."""
        info = self.by_id.get(tid)
        return info.parent if info is not None else self.parents.get(tid)

    def forget(self, info: ThreadInfo) -> None:
        """The chat of this thread is over: it no longer holds its owner."""
        if self.by_id.pop(info.id, None) is not None:
            self._lists_changed = True
        if self.by_user.get(info.owner) == info.id:
            del self.by_user[info.owner]
        self.persist(info)

    async def next_number(self) -> int:
        """The number of a new thread, persisted before the thread exists."""
        self.counter += 1
        await self.state.set(self._counter, str(self.counter))
        return self.counter

    # ---- persistence -------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the threads of the previous run (once)."""
        if self._loaded:
            return
        self._loaded = True
        self.counter = int(await self.state.get(self._counter) or 0)
        for key in self._lists.values():
            for tid in json.loads(await self.state.get(key) or "[]"):
                raw = await self.state.get(f"thread:{tid}")
                if raw:
                    self.add(ThreadInfo.load(raw))

    def persist(self, info: ThreadInfo) -> None:
        """Write this thread's record soon (by the flusher task)."""
        self._dirty.add(info.id)
        self._wake.set()

    async def flush_forever(self) -> None:
        """The flusher task: write what changed, whenever something did."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.write_dirty()
            except Exception:
                log.exception("could not persist Discord thread state")

    async def write_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for tid in dirty:
            info = self.by_id.get(tid)
            await self.state.set(f"thread:{tid}", info.dump() if info else None)
        if dirty and self._lists_changed:
            await self._write_lists()

    async def save_now(self, info: ThreadInfo) -> None:
        """Write this thread's record before going on (a restart must find it)."""
        self._dirty.discard(info.id)
        await self.state.set(f"thread:{info.id}", info.dump())
        await self._write_lists()

    async def _write_lists(self) -> None:
        self._lists_changed = False  # set again if a write fails, so the next flush retries it
        try:
            await self._write_lists_now()
        except BaseException:
            self._lists_changed = True
            raise

    async def _write_lists_now(self) -> None:
        by_shard: dict[int, list[int]] = {sid: [] for sid in self._lists}
        for tid in sorted(self.by_id):
            by_shard.setdefault(self.shards.shard(self.by_id[tid].guild), []).append(tid)
        for sid, key in self._lists.items():
            await self.state.set(key, json.dumps(by_shard[sid]))
