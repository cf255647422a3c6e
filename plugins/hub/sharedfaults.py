"""What the shared hub does when things fail: an instance dies, Redis goes away or comes back empty, a pairing is lost."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from bridge.events import Disconnected, Reason, ServerNotice
from bridge.hygiene import cut
from bridge.wording import not_delivered

if TYPE_CHECKING:
    from .sharedchat import SharedChat

__all__ = ["DATA_LOST", "Faults", "OUTAGE", "not_delivered_to_them"]

log = logging.getLogger(__name__)

OUTAGE = "The stranger pool could not be reached for too long; this chat has ended."
DATA_LOST = "The stranger pool lost its shared state (its database restarted empty); this chat has ended."
UNREAD_LIMIT = 10_000  # entries of a dead instance's stream looked through for undelivered messages
_RENEW_BATCH = 1000


def not_delivered_to_them(texts: list[str]) -> str:
    """One notice for the messages a stranger's instance never read before it died."""
    if len(texts) == 1:
        return not_delivered(texts[0])
    return f"[bridge] Your last {len(texts)} messages were not delivered: the stranger's side stopped (the first: “{cut(texts[0], 60)}”)"


class Faults:
    """Mixed into SharedHub (plugins/hub/shared.py), whose state and relay these methods use."""

    # Provided by SharedHub.
    config: Any
    store: Any
    pool: Any
    relay: Any
    lease: float
    local: dict
    waiting: dict
    connected: set
    gone: Any

    async def instance_down(self, name: str) -> None:
        """Instance `name` stopped renewing its lease: its members left every conversation here.

        Messages of this instance's users that it never read (still in its stream: what it
        handles it deletes) are named to their senders, then the end is told once.
        """
        affected = {}
        for chat in list(self.local.values()):
            conv, entry = chat.conversation, chat.entry
            if conv is not None and entry is not None and any(conv.owners[m] == name for m in conv.alive if m != entry.id):
                affected[entry.id] = chat
        if not affected:
            return
        unread = await self._unread(name, set(affected))
        for me, chat in affected.items():
            conv = chat.conversation
            assert conv is not None
            texts = unread.get(me, [])
            if texts:
                chat.push(ServerNotice(not_delivered_to_them(texts)))
            for member in [m for m in conv.alive if conv.owners[m] == name]:
                self._on_left(me, member, conv.cid)

    async def _unread(self, name: str, senders: set[str]) -> dict[str, list[str]]:
        """The texts of Messages from `senders` still waiting in instance `name`'s stream (taken out of it)."""
        out: dict[str, list[str]] = {}
        key = self.relay.key(name)
        try:
            entries = await self.store.redis.xrange(key, count=UNREAD_LIMIT)
            taken = []
            for entry_id, fields in entries:
                envelope = json.loads(fields.get("e") or "{}")
                if envelope.get("t") == "ev" and envelope.get("from") in senders:
                    taken.append(entry_id)
                    event = envelope.get("e") or {}
                    if event.get("k") == "Message":
                        out.setdefault(str(envelope["from"]), []).append(str(event.get("f", {}).get("text", "")))
            if taken:
                await self.store.redis.xdel(key, *taken)
        except Exception as exc:  # the end is still told; what was lost is not named
            log.warning("hub: could not look for undelivered messages of a dead instance: %s", type(exc).__name__)
        return out

    async def _renew(self) -> None:
        missing: set[str] = set()  # entries found gone from the pool at the last renewal
        while True:
            await asyncio.sleep(self.lease / 3)
            entries = [chat.entry for chat in self.waiting.values() if chat.entry is not None]
            gone: set[str] = set()
            try:
                for i in range(0, len(entries), _RENEW_BATCH):
                    gone.update(await self.pool.renew_missing(entries[i : i + _RENEW_BATCH]))
            except Exception as exc:  # Redis away: the store reports it; entries may expire meanwhile
                log.debug("hub: renewing waiting entries failed: %s", type(exc).__name__)
                continue
            # Gone twice in a row and still nobody said "paired" (that takes milliseconds): the
            # instance that took it died before telling, or its lease ran out. It waits again.
            for entry_id in gone & missing:
                chat = self.waiting.get(entry_id)
                if chat is not None and chat.conversation is None and not chat.closed:
                    self._spawn(self._arrive_again(chat))
            missing = gone

    async def _arrive_again(self, chat: SharedChat) -> None:
        old = chat.entry
        assert old is not None
        self.waiting.pop(old.id, None)
        self.local.pop(old.id, None)
        self.gone.remember(old.id)  # a pairing of it that still comes is undone (its partner told)
        log.info("hub: a waiting entry left the pool unpaired (an instance died mid-pairing); it waits again")
        try:
            await self._enter(chat)
        except Exception as exc:
            log.warning("hub: entering the pool again failed: %s", type(exc).__name__)
            chat.push(Disconnected(reason=Reason.ERROR))

    async def _watch_outage(self) -> None:
        """End this instance's chats once Redis stayed unreachable for outage_grace seconds."""
        since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.5, self.config.outage_grace / 4))
            if self.store.problem() is None:
                since = None
                continue
            now = loop.time()
            since = now if since is None else since
            if now - since >= self.config.outage_grace and (self.local or self.waiting):
                log.error("hub: Redis unreachable for %.0f s; ending this instance's %d chats", now - since, len(self.local))
                self.end_all(OUTAGE)

    async def _data_lost(self) -> None:
        self.end_all(DATA_LOST)

    def end_all(self, text: str) -> None:
        """End every chat of this instance with one notice: its conversations cannot be trusted any more.

        The other members' instances end theirs the same way (each sees the same outage, the lost
        data, or this instance's lease run out), so nobody is told twice; nothing is relayed.
        """
        self.relay.discard()
        for chat in list(self.local.values()):
            if chat.closed:
                continue
            entry, conv = chat.entry, chat.conversation
            if conv is not None and entry is not None:
                conv.alive.clear()
            if entry is not None:
                self.waiting.pop(entry.id, None)
                self.connected.discard(entry.id)
            if chat.fallback is not None:
                chat.fallback.cancel()
                chat.fallback = None
            chat.push(ServerNotice(text))  # says why; the end right after it is then told as explained
            chat.push(Disconnected(reason=Reason.ERROR))
