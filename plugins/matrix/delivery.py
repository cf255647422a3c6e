"""Where the Matrix platform's outbound events go: session room outboxes, ghosts, one notice for lost messages."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bridge.delivery import Item, OutboxPolicy
from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Event,
    Message,
    Mode,
    Reaction,
    Retract,
    Room,
    StoppedTyping,
    Typing,
    Undelivered,
    Waiting,
)
from bridge.outbox import Outbox, Outboxes

from . import render
from .relay import Line
from .rooms import SessionRoom
from .sender import GhostLeave, GhostTyping, Post

if TYPE_CHECKING:
    from .platform import MatrixPlatform

__all__ = ["Delivery"]

log = logging.getLogger(__name__)

_RICH = (Message, Edit, Retract, Reaction)  # (a tuple: `A | B` in isinstance makes a union at every call)


class Delivery:
    """The platform's way out: each event into its session room's outbox (or a ghost's), in order."""

    def __init__(self, host: MatrixPlatform, policy: OutboxPolicy) -> None:
        self.host = host
        self.outboxes = Outboxes(host.sender, policy, metrics=host.metrics, on_given_up=self._given_up)
        self.ghost_typing = Outboxes(GhostTyping(host.sender), policy, metrics=host.metrics)  # per (room, ghost)
        self.undelivered: dict[SessionRoom, int] = {}  # lost stranger messages not told yet

    async def deliver(self, room: Room, event: Event) -> None:
        """Show a stranger-side or core event: queued in the session room's outbox, sent in order."""
        host = self.host
        if type(event) is Message and host.ghosts is None:  # most events: the stranger's text, from the bot
            if host.moderation.keep:  # (lines are kept only for a moderation log)
                host.moderation.note(room.id, event.stranger or "Stranger", event.text)
            if host.lost is not None:
                return
            where = SessionRoom(room.id) if SessionRoom.SEP not in room.id else SessionRoom.parse(room.id)
            if host.rooms.closed(where.room):
                log.info("matrix: Message not shown: the bot is no longer in that room")
                return
            box = self.outboxes.get(where, drop_unused=False)
            if self.undelivered and self.undelivered.get(where):
                self._tell_undelivered(box)
            if event.image is None and event.reply_to is None and event.text:  # (Relay.put's plain text, inlined)
                # Its transaction id now, instead of a key send_text would replace (the block's next, or else later).
                box.put_text(event.stranger, event.text, key=host.txn.take_reserved())
                host.relations.queued(where, event.ref, event.text)
                return
            told = host.relay.put(box, where, event, None, images=event.image is not None and host.media.on(where.room))
            if told is not None:
                box.put_payload(Post(render.notice(told)))
            if box.task is None:  # nothing was queued (an empty text): dropped again once idle
                box.check_idle_soon()
            return
        where = SessionRoom.parse(room.id)
        if self.host.crypto is not None and isinstance(event, (Waiting, Connected, Disconnected)) and getattr(event, "final", True):
            self.host.crypto.undecryptable.chat_ended(room.id)  # a late decryption never reaches another chat
        match event:
            case Waiting() | Connected():
                self.host.rooms.active.add(room.id)
                self.host.moderation.chat_began(room.id)
            case Disconnected(final=True):
                self.host.rooms.active.discard(room.id)
                self.host.moderation.ended(room.id)
            case Message(text=text, stranger=label) | Edit(text=text, stranger=label):
                self.host.moderation.note(room.id, label or "Stranger", text)
        if self.host.lost is not None:
            return  # logged once when the token was refused; nothing can be sent
        if self.host.rooms.closed(where.room):
            log.info("matrix: %s not shown: the bot is no longer in that room", type(event).__name__)
            if self.host.ghosts is not None and isinstance(event, Disconnected):
                await self._ghosts_leave(where, event)  # ghosts may still be there
            return
        if isinstance(event, _RICH):
            await self._deliver_rich(where, event)
            return
        if self.host.ghosts is not None:
            await self._deliver_ghost(where, event)
            return
        box = self.box(where)
        match event:
            case Typing(stranger=label):
                box.typing_start(label)
            case StoppedTyping(stranger=label):
                box.typing_stop(label)
            case _:
                if isinstance(event, Disconnected) and event.final:
                    box.typing_stop(everyone=True)  # a chat that ended leaves nobody typing
                for content in render.render(event):
                    box.put_payload(Post(content))

    async def _deliver_ghost(self, where: SessionRoom, event: Event) -> None:
        """Ghost mode: stranger text and typing come from the stranger's ghost; notices from the bot."""
        sid = where.format()
        match event:
            case Typing(stranger=label):
                self.ghost_typing.get((where.room, await self.host.ghosts.ghost(sid, label))).typing_start()
                return
            case StoppedTyping(stranger=label):
                self.ghost_typing.get((where.room, await self.host.ghosts.ghost(sid, label))).typing_stop()
                return
        box = self.box(where)
        for content in render.render(event):
            box.put_payload(Post(content))
        await self._ghosts_leave(where, event)

    async def _deliver_rich(self, where: SessionRoom, event: Message | Edit | Retract | Reaction) -> None:
        """Stranger text (mergeable), replies, images, edits, retractions and reactions, in order in the
        room's outbox; in ghost mode the stranger's ghost speaks and reacts."""
        sender = None
        if self.host.ghosts is not None and isinstance(event, (Message, Reaction)):
            sender = await self.host.ghosts.ghost(where.format(), event.stranger)
        box = self.box(where)
        told = self.host.relay.put(box, where, event, sender, images=self.host.media.on(where.room))
        if told is not None:
            box.put_payload(Post(render.notice(told)))

    async def _ghosts_leave(self, where: SessionRoom, event: Event) -> None:
        """The ghosts whose chat (or stranger) `event` ends leave the room, after the notice."""
        sid = where.format()
        leaving: list[str] = []
        match event:
            case Waiting() | Connected():
                leaving = await self.host.ghosts.end(sid, everyone=True)  # a new chat gets new ghosts
            case Disconnected(final=True):  # also the core's "restart" end of a chat a crash left
                leaving = await self.host.ghosts.end(sid, everyone=True)
            case Disconnected(stranger=label):
                leaving = await self.host.ghosts.end(sid, label)
        for ghost in leaving:
            self.ghost_typing.discard((where.room, ghost))
            self.box(where).put_call(GhostLeave(self.host.sender, where.room, ghost))

    # ---- outboxes and lost messages -----------------------------------------------------------

    def box(self, where: SessionRoom) -> Outbox:
        """The session room's outbox; lost messages not told yet are told first."""
        box = self.outboxes.get(where)
        if self.undelivered and self.undelivered.get(where):
            self._tell_undelivered(box)
        return box

    def _given_up(self, box: Outbox, item: Item, reason: str) -> None:
        """The outbox gave an item up (it counted it): lost stranger messages are told in one notice."""
        line = item.payload if isinstance(item.payload, Line) else None  # a stranger's reply or image
        if item.kind != "text" and line is None:
            log.warning("matrix: a bridge notice, rich event or call was not delivered (%s)", reason)
            return
        self.host.relay.given_up(box.room, item)
        text = line.text if line is not None else item.text
        log.warning("matrix: %d stranger messages not delivered (%s)", item.count, reason)
        if self.host.rooms.closed(box.room.room) or self.host.lost is not None:
            return  # nobody can be told there any more
        sid = box.room.format()
        start = self.host.rooms.last_start.get(sid)
        if sid in self.host.rooms.active and not (start is not None and start.mode is Mode.ASK):
            # The core tells the stranger about that very message (a spy's strangers do not know
            # the spy: nobody to tell).
            self.host.submit(Room(self.host.name, sid), Undelivered(text))
        self.undelivered[box.room] = self.undelivered.get(box.room, 0) + item.count
        self._tell_undelivered(box)

    def _tell_undelivered(self, box: Outbox) -> None:
        """Queue one notice, first, for the session room's lost messages not yet told (replacing an unsent one)."""
        missing = self.undelivered.get(box.room, 0)
        sending = box.sending
        if sending is not None and isinstance(sending.payload, Post):
            missing -= sending.payload.covers  # on its way
        for item in list(box.queue):
            if isinstance(item.payload, Post) and item.payload.covers:
                if item.attempts:
                    missing -= item.payload.covers
                else:
                    box.queue.remove(item)
        if missing > 0:  # before everything newer than the loss
            box.put_payload(Post(render.notice(render.undelivered(missing)), covers=missing), notify=False, first=True)

    def told(self, where: SessionRoom, covers: int) -> None:
        """A notice about `covers` lost messages of `where` was sent: fewer are left to tell."""
        left = self.undelivered.get(where, 0) - covers
        if left > 0:
            self.undelivered[where] = left
        else:
            self.undelivered.pop(where, None)

    def drop_room(self, rid: str) -> None:
        """Nothing more is written to a room the bot left; its ghosts still leave (they may be there)."""
        for where in [w for w in self.undelivered if w.room == rid]:
            del self.undelivered[where]
        self.host.relations.drop_room(rid, lambda where: where.room)
        leaves: list[GhostLeave] = []
        for box in self.outboxes:
            if box.room.room == rid:
                leaves.extend(item.call for item in box.queue if isinstance(item.call, GhostLeave))
                self.outboxes.discard(box.room)
        for box in self.ghost_typing:
            if box.room[0] == rid:
                self.ghost_typing.discard(box.room)
        for leave in leaves:
            self.outboxes.get(SessionRoom(rid)).put_call(leave)
