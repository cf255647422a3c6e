"""The hub across instances sharing a Redis store: pairing through the Redis pool, relay through each instance's stream."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import logging
import uuid
from typing import Any

from bridge.dedupe import SeenIds
from bridge.events import Connected, Disconnected, Event, Mode, Reason, ServerNotice, Start, StoppedTyping, Typing, Waiting

from .blocks import DAY
from .pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM
from .redis_pool import Entry, Pairing, RedisPool
from .sharedchat import Conversation, SharedChat
from .sharedfaults import Faults
from .stream import StreamRelay
from .wire import decode_event, encode_event

__all__ = ["SharedChat", "SharedHub"]

log = logging.getLogger(__name__)

_LOSSY = (Typing, StoppedTyping)
_EARLY = 4096  # pairings that reached this instance before the arrival that made them had returned
UNREACHABLE = "The stranger pool cannot be reached right now, so no chat was started. Please try again in a minute."


class SharedHub(Faults):
    """The hub backend's engine when its store is Redis: every instance pairs from one pool.

    A pairing is made by the instance whose arrival completed it (one Lua script); it tells every
    member's instance through that instance's stream ("paired"), and from then on each member's
    instance keeps its own copy of the conversation. Events ("ev") and partings ("left") go to
    each other member's instance in the order the sender made them.
    """

    def __init__(self, backend: Any, store: Any) -> None:
        self.config = backend.config
        self.instance: str = store.instance
        self.store = store
        self.pool = RedisPool(store.redis, prefix=store.prefix, owner=self.instance, lease=store.lease_seconds, scan_limit=self.config.scan_limit)
        self.relay = StreamRelay(store.redis, prefix=store.prefix, instance=self.instance, handle=self._on_envelope)
        self.lease = store.lease_seconds
        self.local: dict[str, SharedChat] = {}  # entry id -> this instance's chat, waiting or chatting
        self.waiting: dict[str, SharedChat] = {}  # entry id -> chats still in the pool (their leases renewed)
        self.connected: set[str] = set()  # entry ids of this instance's chats in a live conversation
        self.gone: SeenIds[str, None] = SeenIds(65_536)  # chats that left: a late pairing of one is undone
        # Envelopes for chats this instance does not hold yet: a pairing that came before its arrival
        # had returned, or what partners sent to a chat the previous run left, before resume() took it up.
        self.early: collections.OrderedDict[str, list[dict[str, Any]]] = collections.OrderedDict()
        self._anonymous = itertools.count(1)
        self.run = uuid.uuid4().hex[:12]  # in event ids: a chat's sequence starts again after a restart
        self._tasks: set[asyncio.Task] = set()
        self._renewer: asyncio.Task | None = None
        previous = store.on_instance_down

        async def instance_down(name: str, sessions: int) -> None:
            await self.instance_down(name)
            await previous(name, sessions)

        store.on_instance_down = instance_down
        store.on_data_lost = self._data_lost
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.relay.start()
        loop = asyncio.get_running_loop()
        self._renewer = loop.create_task(self._renew(), name="hub pool leases")
        self._watcher = loop.create_task(self._watch_outage(), name="hub outage watch")

    async def stop(self) -> None:
        for task in (self._renewer, self._watcher):
            if task is not None:
                task.cancel()
        kept = sum(1 for chat in self.local.values() if not chat.closed and chat.survives_restart)
        if kept:  # the other instances wait for this one's return (resume_window) before ending them
            try:
                await self.store.lease.away(self.config.resume_window)
            except Exception as exc:
                log.warning("hub: could not tell the other instances that this one restarts: %s", type(exc).__name__)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        await self.relay.drain(2.0)  # the partings of the shutdown reach the other instances
        await self.relay.close()

    # ---- arrivals ----------------------------------------------------------------------------

    async def connect(self, start: Start) -> SharedChat:
        mode = start.mode
        if mode is Mode.RANDOM and start.answer_questions:
            mode = Mode.ANSWER
        kind = {Mode.ASK: ASK, Mode.ANSWER: ANSWER, Mode.GROUP: GROUP}.get(mode, INTERESTS if start.interests else RANDOM)
        chat = SharedChat(self, start, kind)
        if self.store.problem() is not None:  # Redis is known unreachable: say so, plainly, at once
            chat.push(ServerNotice(UNREACHABLE))
            chat.push(Disconnected(reason=Reason.ERROR))
            return chat
        chat.push(Waiting())
        await self._enter(chat)
        return chat

    async def _enter(self, chat: SharedChat) -> None:
        """Into the pool: paired at once, or waiting (with an interests fallback timer)."""
        start, kind = chat.start, chat.kind
        user = start.user or f"anon-{self.instance}-{next(self._anonymous)}"
        pairing = await self.pool.arrive(
            user,
            mode=kind,
            language=start.language,
            interests=frozenset(start.interests) if kind == INTERESTS else frozenset(),
            question=start.question,
            scope=start.scope,
            accept=tuple(start.accept),
            pairing=start.pairing,
        )
        chat.entry = pairing.entry
        if chat.closed:  # left while the script ran
            self.gone.remember(pairing.entry.id)
            if pairing.members:
                self._form(pairing)  # the others are told it left
            else:
                await self.pool.leave(pairing.entry)
            return
        self.local[pairing.entry.id] = chat
        if pairing.members:
            self._form(pairing)
            return
        self.waiting[pairing.entry.id] = chat
        early = self.early.pop(pairing.entry.id, None)
        if early:  # another instance took it before this arrival had returned
            for envelope in early:
                self._on_envelope(envelope)
        elif kind == INTERESTS and not start.strict_interests:
            chat.fallback = asyncio.get_running_loop().call_later(self.config.interest_fallback, self._fall_back, chat)

    def _fall_back(self, chat: SharedChat) -> None:
        chat.fallback = None
        if chat.closed or chat.conversation is not None or chat.entry is None:
            return
        self._spawn(self._fall_back_now(chat, chat.entry))

    async def _fall_back_now(self, chat: SharedChat, entry: Entry) -> None:
        try:
            pairing = await self.pool.fall_back(entry, language=chat.start.language)
        except Exception as exc:  # still waiting among its interests
            log.warning("hub: an interests search could not fall back to random: %s", type(exc).__name__)
            return
        if pairing is not None and pairing.members:
            self._form(pairing)

    def _form(self, pairing: Pairing) -> None:
        """Tell every member's instance (this one directly) of the conversation the pool formed."""
        members = pairing.members
        kind = pairing.kind if pairing.kind in (ASK, GROUP) else RANDOM
        desc = {
            "cid": uuid.uuid4().hex,
            "kind": kind,
            "members": [[m.id, m.owner, m.user, m.pairing] for m in members],
            "question": members[0].question if kind == ASK else None,
            "common": list(pairing.common),
        }
        for member in members:
            self._to(member.owner, {"t": "paired", "to": member.id, "id": f"p:{desc['cid']}:{member.id}", "c": desc})

    def _to(self, owner: str, envelope: dict[str, Any], *, lossy: bool = False) -> None:
        if owner == self.instance:
            self._on_envelope(envelope)
        else:
            self.relay.send(owner, envelope, lossy=lossy)

    # ---- what arrives (from this instance or through the stream) -------------------------------

    def _keep_early(self, to: str, envelope: dict[str, Any]) -> None:
        self.early.setdefault(to, []).append(envelope)
        while len(self.early) > _EARLY:
            self.early.popitem(last=False)

    def _on_envelope(self, envelope: dict[str, Any]) -> None:
        kind = envelope.get("t")
        to = str(envelope.get("to"))
        if kind in ("ev", "left") and to not in self.local and to not in self.gone:
            self._keep_early(to, envelope)  # a chat of the previous run, not taken up yet
            return
        if kind == "ev":
            self._on_event(envelope)
        elif kind == "left":
            self._on_left(str(envelope["to"]), str(envelope["from"]), str(envelope["cid"]))
        elif kind == "paired":
            self._on_paired(envelope)
        else:
            log.warning("hub relay: an envelope of unknown kind %r was dropped", kind)

    def _on_paired(self, envelope: dict[str, Any]) -> None:
        to = str(envelope["to"])
        conv = Conversation(envelope["c"])
        chat = self.local.get(to)
        if chat is None:
            if to in self.gone:  # it left before the pairing reached it: the others are told
                self._announce_left(conv, to)
            else:
                self._keep_early(to, envelope)
            return
        if chat.conversation is not None:  # cannot happen with one pool; undo rather than talk in two chats
            self._announce_left(conv, to)
            return
        self.waiting.pop(to, None)
        if chat.fallback is not None:
            chat.fallback.cancel()
            chat.fallback = None
        chat.conversation = conv
        self.connected.add(to)
        if conv.kind == ASK and to == conv.ids[0]:
            chat.push(Connected(question=conv.question, strangers=("Stranger 1", "Stranger 2")))
        elif conv.kind == ASK:
            chat.push(Connected(question=conv.question))
        elif conv.kind == GROUP:
            chat.push(Connected(strangers=("Stranger 1", "Stranger 2")))
        else:
            chat.push(Connected(common_interests=conv.common))

    def _on_event(self, envelope: dict[str, Any]) -> None:
        chat = self.local.get(str(envelope["to"]))
        if chat is None or chat.conversation is None or chat.conversation.cid != envelope["cid"]:
            return
        if str(envelope["from"]) not in chat.conversation.alive:
            return
        try:
            event = decode_event(envelope["e"])
        except (KeyError, TypeError, ValueError):
            log.warning("hub relay: an unreadable event was dropped")
            return
        chat.push(event)

    def _on_left(self, to: str, leaver: str, cid: str) -> None:
        """`leaver` left the conversation `cid`: tell this instance's member `to` once."""
        chat = self.local.get(to)
        conv = chat.conversation if chat is not None else None
        if chat is None or conv is None or conv.cid != cid or leaver not in conv.alive or to not in conv.alive:
            return
        conv.alive.remove(leaver)
        if conv.kind == ASK:
            if leaver == conv.ids[0]:
                return  # the answerers go on discussing; the spy was invisible to them
            final = True
        else:
            final = not (conv.kind == GROUP and len(conv.alive) >= 2)
        chat.push(Disconnected(conv.label(to, leaver), Reason.STRANGER, final))
        if final:
            conv.alive.clear()
            self.connected.discard(to)

    # ---- what this instance's chats do ---------------------------------------------------------

    def relay_event(self, chat: SharedChat, event: Event) -> None:
        conv, entry = chat.conversation, chat.entry
        assert conv is not None and entry is not None
        me = entry.id
        seq = next(chat.seq)
        lossy = type(event) in _LOSSY
        for other in list(conv.alive):
            if other == me:
                continue
            out = dataclasses.replace(event, stranger=conv.label(other, me))
            owner = conv.owners[other]
            if owner == self.instance:
                partner = self.local.get(other)
                if partner is not None:
                    partner.push(out)
                continue
            envelope = {"t": "ev", "to": other, "from": me, "cid": conv.cid, "id": f"e:{self.run}:{me}:{seq}:{other}", "e": encode_event(out)}
            self.relay.send(owner, envelope, lossy=lossy)

    async def leave(self, chat: SharedChat) -> None:
        """A member left (stop, next, report, shutdown): out of the pool, or the others told once."""
        if chat.fallback is not None:
            chat.fallback.cancel()
            chat.fallback = None
        entry = chat.entry
        if entry is None:
            return
        me = entry.id
        self.local.pop(me, None)
        self.gone.remember(me)
        self.connected.discard(me)
        conv = chat.conversation
        if conv is not None and me in conv.alive:
            self._announce_left(conv, me)
            conv.alive.clear()
        if self.waiting.pop(me, None) is not None:
            try:
                await self.pool.leave(entry)  # False: taken meanwhile; that pairing is undone when it arrives
            except Exception as exc:  # its lease runs out instead
                log.warning("hub: leaving the pool failed: %s", type(exc).__name__)

    def _announce_left(self, conv: Conversation, leaver: str) -> None:
        others = [m for m in conv.alive if m != leaver] if leaver in conv.alive else []
        for other in others:
            self._to(conv.owners[other], {"t": "left", "to": other, "from": leaver, "cid": conv.cid, "id": f"l:{conv.cid}:{leaver}:{other}"})
        if others and self.config.repair_cooldown > 0:
            keys = [conv.pairings[leaver], *(conv.pairings[m] for m in others)]
            self._spawn(self._parted(keys))

    async def _parted(self, users: list[str]) -> None:
        try:
            for a, b in itertools.combinations(users, 2):
                await self.pool.parted(a, b, self.config.repair_cooldown)
        except Exception as exc:
            log.warning("hub: the cool-down after a parting could not be stored: %s", type(exc).__name__)

    async def report(self, chat: SharedChat) -> None:
        """Block every other member of the reporter's last conversation (in Redis, for every instance)."""
        conv, entry = chat.conversation, chat.entry
        if conv is None or entry is None:
            return
        me = conv.users[entry.id]
        for other in conv.ids:
            if other != entry.id and conv.users[other] != me:
                await self.pool.block(me, conv.users[other], ttl=self.config.block_days * DAY, per_user=self.config.blocks_per_user)
                log.info("hub: a pair was blocked after a report")

    # ---- restarts ----------------------------------------------------------------------------

    def resume(self, handle: str) -> SharedChat | None:
        """Take up a chat this instance's previous run left; what its partners sent meanwhile follows."""
        try:
            desc = json.loads(handle)
            conv = Conversation(desc)
            me = str(desc["me"])
            alive = [str(m) for m in desc.get("alive", conv.ids)]
        except (ValueError, KeyError, TypeError):
            return None
        if me not in conv.ids or conv.owners[me] != self.instance or me in self.local:
            return None
        conv.alive = [m for m in conv.ids if m in alive]
        chat = SharedChat(self, Start(user=conv.users[me], pairing=conv.pairings[me]), conv.kind)
        chat.entry = Entry(me, self.instance, conv.users[me], pairing=conv.pairings[me])
        chat.conversation = conv
        self.local[me] = chat
        self.connected.add(me)
        for envelope in self.early.pop(me, []):
            self._on_envelope(envelope)
        return chat

    def abandon(self, handle: str) -> None:
        """A chat of the previous run that is not taken up: its partners are told it left."""
        try:
            desc = json.loads(handle)
            conv = Conversation(desc)
            me = str(desc["me"])
        except (ValueError, KeyError, TypeError):
            return
        if me in conv.ids:
            self.gone.remember(me)
            self.early.pop(me, None)
            self._announce_left(conv, me)

    def resumed(self) -> None:
        """The router took up what it could: envelopes still kept for chats of the previous run are dropped."""
        for to in [to for to, kept in self.early.items() if any(e.get("t") != "paired" for e in kept)]:
            del self.early[to]

    # ---- upkeep ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        """This instance's waiting users per mode and its members of live chats."""
        by_kind = collections.Counter(chat.kind for chat in self.waiting.values())
        waiting = {
            Mode.RANDOM.value: by_kind[RANDOM] + by_kind[INTERESTS],
            Mode.ASK.value: by_kind[ASK],
            Mode.ANSWER.value: by_kind[ANSWER],
            Mode.GROUP.value: by_kind[GROUP],
        }
        return {"waiting": waiting, "chats": len(self.connected), "shared": True}

    def online(self) -> int:
        return len(self.waiting) + len(self.connected)
