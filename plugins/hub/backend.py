"""The hub backend: chats between sessions of this process, matched by the pool (or, on Redis, of every instance)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from bridge.abc import Backend, Chat
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
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)

from .alive import AliveMark
from .blocks import DAY, Blocks
from .config import HubConfig
from .pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM, Match, Pool, Ticket
from .queued import END, QueuedChat

if TYPE_CHECKING:  # imported by scale_out: a single instance never loads the Redis client
    from .shared import SharedHub

__all__ = ["HubBackend", "HubChat"]

log = logging.getLogger(__name__)

_RICH = (Edit, Retract, Reaction)
_ANONYMOUS = itertools.count(1)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps(…) with these, minus an encoder per call


class _Conversation:
    """Members of one live chat; for spy chats members[0] is the asker, who only watches."""

    __slots__ = ("cid", "kind", "members", "alive")

    def __init__(self, kind: str, members: list[HubChat], cid: str | None = None) -> None:
        self.cid = cid or uuid.uuid4().hex  # names it in the members' handles, to find each other after a restart
        self.kind = kind
        self.members = members
        self.alive = list(members)

    def description(self, me: int) -> str:
        """The conversation and member `me`'s place in it, as the member's handle: a compact JSON
        list, not an object with its keys, since every session's record keeps its member's handle.
        The pairings are left out when they are the users (most chats); resume reads both forms."""
        users = [m.ticket.user if m.ticket else "" for m in self.members]
        pairings = [m.ticket.pairing if m.ticket else "" for m in self.members]
        fields = [self.cid, self.kind, users, me] if pairings == users else [self.cid, self.kind, users, pairings, me]
        return _COMPACT(fields)

    def label(self, viewer: HubChat, speaker: HubChat) -> str | None:
        """How `viewer` names `speaker`: None in a one-to-one chat."""
        if self.kind == ASK:
            if viewer is not self.members[0]:
                return None
            return f"Stranger {self.members.index(speaker)}"
        if self.kind == GROUP:
            others = [m for m in self.members if m is not viewer]
            return f"Stranger {others.index(speaker) + 1}"
        return None


class HubChat(QueuedChat):
    """One member's side of a hub conversation."""

    __slots__ = ("hub", "start", "ticket", "conversation", "fallback")
    enforces_blocks = True  # a reported pair is not matched again for block_days, across restarts (blocks are stored)
    rich = True  # edits, deletions, reactions, references and pictures travel as they are

    def apart_days(self) -> float | None:
        return self.hub.config.block_days

    @property
    def handle(self) -> str | None:  # type: ignore[override]
        """The conversation and this member's place in it, for `HubBackend.resume` after a restart."""
        conv = self.conversation
        if conv is None or self not in conv.alive or self.hub.config.resume_window <= 0:
            return None
        return conv.description(conv.members.index(self))

    @property
    def survives_restart(self) -> bool:
        """Whether a stop may leave this chat for the next run to resume (the room is told nothing)."""
        return self.handle is not None

    def __init__(self, hub: HubBackend, start: Start) -> None:
        super().__init__()
        self.hub = hub
        self.start = start
        self.ticket: Ticket | None = None
        self.conversation: _Conversation | None = None
        self.fallback: asyncio.TimerHandle | None = None

    def stranger_key(self) -> str | None:
        # Only in a one-to-one chat is "the stranger" one person; a group's report names nobody.
        conv = self.conversation
        if conv is None or conv.kind in (ASK, GROUP) or len(conv.members) != 2:
            return None
        other = next(m for m in conv.members if m is not self)
        return other.ticket.user if other.ticket is not None else None

    async def send(self, event: Event) -> None:
        conv = self.conversation
        if type(event) is Report:  # also after the chat ended: "report" is often pressed then
            self.hub.report(self)
            return
        if self.closed:
            return
        if conv is None or self not in conv.alive:
            return
        if conv.kind == ASK and conv.members[0] is self:
            return  # the spy only watches
        kind = type(event)
        if kind is Message:
            for other in conv.alive:
                if other is not self:
                    label = conv.label(other, self)
                    if label is None and event.stranger is None and event.quote is None:
                        other.push(event)  # already what the partner gets (a one-to-one chat): no new Message
                    else:
                        other.push(Message(event.text, label, event.ref, event.reply_to, image=event.image))
        elif kind in _RICH:  # core references only: each receiving session maps them to its room's ids
            for other in conv.alive:
                if other is not self:
                    other.push(dataclasses.replace(event, stranger=conv.label(other, self)))
        elif kind in (Typing, StoppedTyping):
            for other in conv.alive:
                if other is not self:
                    other.push(type(event)(conv.label(other, self)))

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub.leave(self)
        self.queue.put_nowait(END)


class _StandIn(HubChat):
    """A member of a chat resumed after a restart whose own session has not been taken up (yet)."""

    __slots__ = ()


class HubBackend(Backend):
    """Pairs any two sessions of this bridge: random, interests, language, spy ask/answer, groups of three."""

    Config = HubConfig
    max_message_length = 4000
    honours_accept = True  # the pool checks both people's Start.accept before pairing
    needs_persistent_rooms = True  # a chat is resumed only where the room outlived the process (Platform.rooms_persist)

    def __init__(self, name, config, state=None) -> None:
        super().__init__(name, config, state)
        blocks = Blocks(ttl=config.block_days * DAY, per_reporter=config.blocks_per_user, limit=config.max_blocks)
        self.pool = Pool(repair_cooldown=config.repair_cooldown, scan_limit=config.scan_limit, blocks=blocks)
        self.chats_live = 0
        self.shared: SharedHub | None = None  # set by scale_out: the pool and the chats span instances
        self.alive: AliveMark | None = None  # this run's sign of life, and the previous run's
        self._resuming: dict[str, _Conversation] = {}  # conversations taken up again, while resume() runs

    def scale_out(self, store: Any) -> None:
        """Pair and relay through `store`'s Redis (a bridge.store RedisStore) with every instance sharing it.

        Called by the daemon before `start` when its store is shared between instances.
        """
        from .shared import SharedHub

        self.shared = SharedHub(self, store)

    async def stop(self) -> None:
        if self.alive is not None:
            await self.alive.stop()
        if self.shared is not None:
            await self.shared.stop()

    async def start(self) -> None:
        if self.state is not None and self.config.resume_window > 0:
            # One mark per instance when several share the store: each instance's chats are its own to resume.
            key = f"alive_at:{self.shared.instance}" if self.shared is not None else "alive_at"
            self.alive = AliveMark(self.state, key, self.config.resume_window)
            await self.alive.start()
        if self.shared is not None:  # blocks live in Redis, per user
            await self.shared.start()
            return
        if self.state is not None:
            # "reporter<TAB>other<TAB>expiry" per line, oldest first; older files have no expiry.
            for line in (await self.state.get("blocked") or "").splitlines():
                reporter, other, *rest = [*line.split("\t"), ""][:3]
                try:
                    until = float(rest[0]) if rest[0] else None
                except ValueError:
                    until = None
                if reporter and other:
                    self.pool.blocks.add(reporter, other, until)

    async def connect(self, start: Start) -> Chat:
        if self.shared is not None:
            return await self.shared.connect(start)
        chat = HubChat(self, start)
        mode = start.mode
        if mode is Mode.RANDOM and start.answer_questions:
            mode = Mode.ANSWER
        kind = {Mode.ASK: ASK, Mode.ANSWER: ANSWER, Mode.GROUP: GROUP}.get(mode, INTERESTS if start.interests else RANDOM)
        ticket = Ticket(
            user=start.user or f"anon-{next(_ANONYMOUS)}",
            kind=kind,
            language=start.language,
            interests=frozenset(start.interests) if kind == INTERESTS else frozenset(),
            question=start.question,
            strict=start.strict_interests,
            payload=chat,
            scope=start.scope,
            accept=start.accept,
            pairing=start.pairing or "",
        )
        chat.ticket = ticket
        chat.push(Waiting())
        match = self.pool.arrive(ticket)
        if match is not None:
            self._begin(match)
        elif kind == INTERESTS and not ticket.strict:
            loop = asyncio.get_running_loop()
            chat.fallback = loop.call_later(self.config.interest_fallback, self._fall_back, chat)
        return chat

    # ---- restarts ----------------------------------------------------------------------------

    async def resume(self, handle: str) -> Chat | None:
        """Take up a member of a chat the previous run left (within resume_window of its last sign of life)."""
        if self.alive is None or not self.alive.in_window():
            return None
        if self.shared is not None:
            return self.shared.resume(handle)
        try:
            data = json.loads(handle)
            if isinstance(data, list):  # the compact form: [cid, kind, users, me] or [cid, kind, users, pairings, me]
                cid, kind, users, *rest, me = data
                if len(rest) > 1:
                    raise ValueError("not a hub handle")
                data = {"cid": cid, "kind": kind, "users": users, "pairings": rest[0] if rest else None, "me": me}
            cid, kind, me, users = str(data["cid"]), str(data["kind"]), int(data["me"]), [str(u) for u in data["users"]]
            pairings = [str(p) for p in data.get("pairings") or users]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not 0 <= me < len(users) or len(pairings) != len(users):
            return None
        conv = self._resuming.get(cid)
        if conv is None:  # its members stand in until they are resumed; resumed() ends the chat for the rest
            standins = [self._standin(user, pairing, kind) for user, pairing in zip(users, pairings)]
            conv = self._resuming[cid] = _Conversation(kind, standins, cid)
            for standin in standins:
                standin.conversation = conv
            self.chats_live += 1
        standin = conv.members[me]
        if not isinstance(standin, _StandIn):
            return None  # that member was taken up already
        chat = HubChat(self, Start(user=users[me]))
        chat.ticket = standin.ticket
        chat.conversation = conv
        conv.members[me] = chat
        conv.alive[conv.alive.index(standin)] = chat
        return chat

    def _standin(self, user: str, pairing: str, kind: str) -> HubChat:
        chat = _StandIn(self, Start(user=user))
        chat.ticket = Ticket(user=user, kind=kind, pairing=pairing)
        chat.closed = True  # shows nothing
        return chat

    async def abandon(self, handle: str) -> None:
        """A member the router could not resume: resumed() tells the others it left."""
        if self.shared is not None:
            self.shared.abandon(handle)

    async def resumed(self) -> None:
        """Called once after the router resumed what it could: members nobody took up have left."""
        resuming, self._resuming = self._resuming, {}
        for conv in resuming.values():
            for member in list(conv.members):
                if isinstance(member, _StandIn):
                    self.leave(member)
        if self.shared is not None:
            self.shared.resumed()

    def _fall_back(self, chat: HubChat) -> None:
        chat.fallback = None
        if chat.closed or chat.conversation is not None or chat.ticket is None:
            return
        match = self.pool.fall_back(chat.ticket)
        if match is not None:
            self._begin(match)

    def _begin(self, match: Match) -> None:
        members: list[HubChat] = [t.payload for t in match.members]  # type: ignore[misc]
        conv = _Conversation(match.kind if match.kind in (ASK, GROUP) else RANDOM, members)
        self.chats_live += 1
        for chat in members:
            if chat.fallback is not None:
                chat.fallback.cancel()
                chat.fallback = None
            chat.conversation = conv
        for chat in members:
            if conv.kind == ASK and chat is members[0]:
                chat.push(Connected(question=match.question, strangers=("Stranger 1", "Stranger 2")))
            elif conv.kind == ASK:
                chat.push(Connected(question=match.question))
            elif conv.kind == GROUP:
                chat.push(Connected(strangers=("Stranger 1", "Stranger 2")))
            else:
                chat.push(Connected(common_interests=match.common))

    def leave(self, chat: HubChat) -> None:
        """A member left (stop, next, report, shutdown): tell the others once."""
        if chat.fallback is not None:
            chat.fallback.cancel()
            chat.fallback = None
        if chat.ticket is not None:
            self.pool.leave(chat.ticket)
        conv = chat.conversation
        if conv is None or chat not in conv.alive:
            return
        conv.alive.remove(chat)
        self.pool.parted(m.ticket.pairing for m in conv.members if m.ticket)
        if conv.kind == ASK:
            if chat is conv.members[0]:
                return  # the answerers go on discussing; the spy was invisible to them
            for other in list(conv.alive):
                final = True
                other.push(Disconnected(conv.label(other, chat), Reason.STRANGER, final))
            conv.alive.clear()
        elif conv.kind == GROUP and len(conv.alive) >= 2:
            for other in conv.alive:
                other.push(Disconnected(conv.label(other, chat), Reason.STRANGER, final=False))
        else:
            for other in list(conv.alive):
                other.push(Disconnected(conv.label(other, chat), Reason.STRANGER))
            conv.alive.clear()
        if not conv.alive:
            self.chats_live -= 1

    def report(self, chat: HubChat) -> None:
        """Block every other member of the reporter's last conversation, for good."""
        conv = chat.conversation
        if conv is None or chat.ticket is None:
            return
        for other in conv.members:
            if other is not chat and other.ticket is not None:
                self.pool.block(chat.ticket.user, other.ticket.user)
                log.info("hub: a pair was blocked after a report")
        if self.state is not None:
            lines = "\n".join(f"{reporter}\t{other}\t{until:.0f}" for reporter, other, until in self.pool.blocks.items())
            asyncio.get_running_loop().create_task(self.state.set("blocked", lines))

    async def online(self) -> int | None:
        if self.shared is not None:
            return self.shared.online()
        return self.pool.waiting + self.chats_live * 2

    def stats(self) -> dict[str, Any]:
        """Users waiting per mode (an interests search counts as "random"), live chats and blocks kept."""
        if self.shared is not None:
            return self.shared.stats()
        by_kind = self.pool.waiting_by_kind
        waiting = {
            Mode.RANDOM.value: by_kind[RANDOM] + by_kind[INTERESTS],
            Mode.ASK.value: by_kind[ASK],
            Mode.ANSWER.value: by_kind[ANSWER],
            Mode.GROUP.value: by_kind[GROUP],
        }
        return {"waiting": waiting, "chats": self.chats_live, "blocks": len(self.pool.blocks)}
