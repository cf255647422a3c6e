"""The hub across instances sharing a Redis store: pairing through the Redis pool, relay through each instance's stream."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bridge.abc import Chat
from bridge.dedupe import SeenIds
from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Event,
    Message,
    Mode,
    Reaction,
    Reason,
    Report,
    Retract,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.hygiene import cut
from bridge.inbox import Inbox
from bridge.wording import not_delivered

from .blocks import DAY
from .pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM
from .redis_pool import Entry, Pairing, RedisPool
from .stream import StreamRelay
from .wire import decode_event, encode_event

__all__ = ["SharedChat", "SharedHub", "not_delivered_to_them"]

log = logging.getLogger(__name__)

_END = object()
_RELAYED = (Message, Typing, StoppedTyping, Edit, Retract, Reaction)
_LOSSY = (Typing, StoppedTyping)
_EARLY = 4096  # pairings that reached this instance before the arrival that made them had returned
_RENEW_BATCH = 1000
UNREACHABLE = "The stranger pool cannot be reached right now, so no chat was started. Please try again in a minute."
OUTAGE = "The stranger pool could not be reached for too long; this chat has ended."
DATA_LOST = "The stranger pool lost its shared state (its database restarted empty); this chat has ended."
UNREAD_LIMIT = 10_000  # entries of a dead instance's stream looked through for undelivered messages


def not_delivered_to_them(texts: list[str]) -> str:
    """One notice for the messages a stranger's instance never read before it died."""
    if len(texts) == 1:
        return not_delivered(texts[0])
    return f"[bridge] Your last {len(texts)} messages were not delivered: the stranger's side stopped (the first: “{cut(texts[0], 60)}”)"


class _Conversation:
    """One instance's copy of a live chat: who is in it (entry id, owner instance, user) and who is still there."""

    __slots__ = ("cid", "kind", "ids", "owners", "users", "pairings", "alive", "question", "common")

    def __init__(self, desc: dict[str, Any]) -> None:
        self.cid = str(desc["cid"])
        self.kind = str(desc["kind"])
        self.ids = [str(m[0]) for m in desc["members"]]
        self.owners = {str(m[0]): str(m[1]) for m in desc["members"]}
        self.users = {str(m[0]): str(m[2]) for m in desc["members"]}  # moderation keys (reports, strikes)
        self.pairings = {str(m[0]): str(m[3] if len(m) > 3 else m[2]) for m in desc["members"]}  # cool-downs
        self.alive = list(self.ids)
        self.question = desc.get("question")
        self.common = tuple(desc.get("common") or ())

    def label(self, viewer: str, speaker: str) -> str | None:
        """How `viewer` names `speaker` (as plugins/hub/backend.py's conversations do): None one-to-one."""
        if self.kind == ASK:
            if viewer != self.ids[0]:
                return None
            return f"Stranger {self.ids.index(speaker)}"
        if self.kind == GROUP:
            others = [m for m in self.ids if m != viewer]
            return f"Stranger {others.index(speaker) + 1}"
        return None


class SharedChat(Chat):
    """One member's side of a hub conversation whose other members may live on other instances."""

    __slots__ = ("hub", "start", "kind", "queue", "entry", "conversation", "fallback", "closed", "seq")
    enforces_blocks = True  # blocks are kept in Redis for every instance, for block_days
    rich = True  # edits, deletions, reactions, references and pictures travel as they are (plugins/hub/wire.py)

    def apart_days(self) -> float | None:
        return self.hub.config.block_days

    @property
    def handle(self) -> str | None:  # type: ignore[override]
        """The conversation as this instance knows it and this member's entry id, for `SharedHub.resume`."""
        conv, entry = self.conversation, self.entry
        if conv is None or entry is None or entry.id not in conv.alive or self.hub.config.resume_window <= 0:
            return None
        members = [[m, conv.owners[m], conv.users[m], conv.pairings[m]] for m in conv.ids]
        return json.dumps({"cid": conv.cid, "kind": conv.kind, "members": members, "me": entry.id,
                           "question": conv.question, "common": list(conv.common), "alive": conv.alive})

    @property
    def survives_restart(self) -> bool:
        """Whether a stop may leave this chat for this instance's next run (the others are not told)."""
        return self.handle is not None

    def __init__(self, hub: SharedHub, start: Start, kind: str) -> None:
        self.hub = hub
        self.start = start
        self.kind = kind
        self.queue: Inbox = Inbox()  # unbounded: the partner's session rate-limits what it sends
        self.entry: Entry | None = None
        self.conversation: _Conversation | None = None
        self.fallback: asyncio.TimerHandle | None = None
        self.closed = False
        self.seq = itertools.count(1)

    async def events(self) -> AsyncIterator[Event]:
        queue = self.queue
        while True:
            event = await queue.get()
            if event is _END:
                return
            yield event
            if type(event) is Disconnected and event.final:
                return

    def push(self, event: Event) -> None:
        if not self.closed:
            self.queue.put_nowait(event)

    def stranger_key(self) -> str | None:
        conv, entry = self.conversation, self.entry
        if conv is None or entry is None or conv.kind in (ASK, GROUP) or len(conv.ids) != 2:
            return None
        return next(conv.users[m] for m in conv.ids if m != entry.id)

    async def send(self, event: Event) -> None:
        if type(event) is Report:  # also after the chat ended: "report" is often pressed then
            await self.hub.report(self)
            return
        conv, entry = self.conversation, self.entry
        if self.closed or conv is None or entry is None or entry.id not in conv.alive:
            return
        if conv.kind == ASK and conv.ids[0] == entry.id:
            return  # the spy only watches
        if type(event) in _RELAYED:
            self.hub.relay_event(self, event)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.put_nowait(_END)
        await self.hub.leave(self)


class SharedHub:
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
        conv = _Conversation(envelope["c"])
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

    def _announce_left(self, conv: _Conversation, leaver: str) -> None:
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

    # ---- restarts ----------------------------------------------------------------------------

    def resume(self, handle: str) -> SharedChat | None:
        """Take up a chat this instance's previous run left; what its partners sent meanwhile follows."""
        try:
            desc = json.loads(handle)
            conv = _Conversation(desc)
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
            conv = _Conversation(desc)
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
