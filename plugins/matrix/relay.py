"""The stranger side of the rich relay in a Matrix room: replies, images, edits, redactions, reactions, and Posted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nio import RoomGetEventResponse

from bridge.events import Edit, Image, Message, Posted, Reaction, Retract, Room
from bridge.hygiene import cut
from bridge.delivery import Item, merge_marker
from bridge.outbox import Outbox

from . import render
from .relations import EDITS_PER_MESSAGE, REACTIONS_PER_MESSAGE, Ours, Relations, Shown, posted_id, split_id
from .rooms import SessionRoom
from .sender import RoomSender, Write

__all__ = ["Change", "Line", "Relay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Line:
    """An outbox payload: a stranger message that is not plain mergeable text (a reply, an image)."""

    ref: str | None
    text: str
    label: str | None
    sender: str | None  # the ghost that speaks (None: the bot)
    reply_to: str | None = None
    quote: str | None = None
    image: Image | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """An outbox payload: the stranger edited, retracted or reacted; `sender` is the ghost reacting."""

    event: Edit | Retract | Reaction
    sender: str | None = None


class Relay:
    """Queues and sends the stranger's rich events in order with its texts, and answers each post with Posted."""

    def __init__(self, name: str, relations: Relations, sender: RoomSender, submit: Callable[..., Any],
                 upload: Callable[..., Any]) -> None:
        self.name = name
        self.relations = relations
        self.sender = sender
        self.submit = submit
        self.upload = upload  # upload(Image, room) -> {"url": mxc} or {"file": ...} (plugins.matrix.media.Media.upload)

    # ---- queueing (from deliver) ---------------------------------------------------------------

    def put(self, box: Outbox, where: SessionRoom, event: Message | Edit | Retract | Reaction, sender: str | None,
            *, images: bool) -> str | None:
        """Queue a stranger's event; returns a notice to show before it when part of it cannot be shown.
        `images`: the room shows images (only asked of a Message with one)."""
        told = None
        if isinstance(event, Message):
            image = event.image if images else None
            if event.image is not None and not images:
                told = "The stranger sent an image; images are off in this room, so it is not shown."
            if image is None and event.reply_to is None:
                if event.text:
                    label = sender if sender is not None else event.stranger
                    box.put_text(label, event.text)
                    self.relations.queued(where, event.ref, event.text)
                return told
            if image is None and not event.text:
                return told
            box.put_payload(Line(event.ref, event.text, event.stranger, sender, event.reply_to, event.quote, image))
            return told
        box.put_payload(Change(event, sender))
        return None

    # ---- texts sent by RoomSender.send_text ------------------------------------------------------

    def text_posted(self, room: SessionRoom, item: Item, part: int, event_id: str, ghost: str | None) -> None:
        """A part of a (maybe merged) stranger text is in the room: remember it; the first part answers Posted."""
        if not event_id:
            return
        shown = item.memo.get("shown")
        if shown is None:
            pending = self.relations.take(room, item.count)
            shown = Shown(room.format(), None if ghost else item.label, ghost, [p.text for p in pending])
            item.memo["shown"] = shown
            for n, p in enumerate(pending):
                if p.ref is not None:
                    self.submit(Room(self.name, room.format()), Posted(p.ref, posted_id(event_id, n)))
        shown.parts.append(event_id)
        self.relations.lines.remember(event_id, shown)

    def given_up(self, room: SessionRoom, item: Item) -> None:
        """A stranger text was given up before any part of it showed: its waiting refs go with it."""
        if item.kind == "text" and "shown" not in item.memo:
            self.relations.take(room, item.count)

    # ---- payloads sent by RoomSender.send_payload ------------------------------------------------

    async def send(self, room: SessionRoom, item: Item) -> None:
        payload = item.payload
        if isinstance(payload, Line):
            await self._line(room, item, payload)
            return
        assert isinstance(payload, Change)
        match payload.event:
            case Reaction() as reaction:
                await self._react(room, item, reaction, payload.sender)
            case Edit(ref=ref, text=text):
                await self._change(room, item, ref, text)
            case Retract(ref=ref):
                await self._change(room, item, ref, None)

    async def _line(self, room: SessionRoom, item: Item, line: Line) -> None:
        """A reply or an image (re-uploaded to our homeserver first: the sender's URL never shows)."""
        ghost = line.sender
        if line.image is not None:
            where = item.memo.get("uploaded")
            if where is None:
                where = item.memo["uploaded"] = await self.upload(line.image, room.room)
            img = line.image
            contents = [render.image(where, img.mime, img.width, img.height, len(img.data), line.label, ghost=ghost is not None)]
            if line.text:
                contents += self._render(line.text, line.label, ghost is not None, 1)
        else:
            contents = self._render(line.text, line.label, ghost is not None, 1, all_parts=True)
        if line.reply_to is not None:
            target, _ = split_id(line.reply_to)
            contents[0] = render.replying(contents[0], target, line.quote)
        shown = item.memo.get("shown")
        if shown is None:
            shown = item.memo["shown"] = Shown(room.format(), line.label, ghost, [line.text], quote=line.quote,
                                               reply_to=line.reply_to, image=line.image is not None)
        for part in range(len(shown.parts), len(contents)):
            txn = item.key if part == 0 else f"{item.key}.{part}"
            sent = await self.sender.write(room.room, Write(content=contents[part], thread=room.root, txn=txn, sender=ghost))
            if not sent.event_id:
                continue
            shown.parts.append(sent.event_id)
            self.relations.lines.remember(sent.event_id, shown)
            if part == 0 and line.ref is not None:
                self.submit(Room(self.name, room.format()), Posted(line.ref, sent.event_id))

    def _render(self, text: str, label: str | None, ghost: bool, count: int, *, all_parts: bool = False) -> list[dict[str, Any]]:
        marker = merge_marker(count, label) if count > 1 else None
        contents = render.ghost_message(text, marker) if ghost else render.message(text, label, marker)
        return contents if all_parts else contents[:1]

    async def _change(self, room: SessionRoom, item: Item, ref: str, text: str | None) -> None:
        """An edit (`text`) or a retraction (None) of a stranger's line: `m.replace` with the remaining
        text, or redactions once nothing of the event is left."""
        event, index = split_id(ref)
        shown = self.relations.lines.get(event)
        if shown is None and index == 0:
            shown = await self._recall(room, event, item.payload.event.stranger)
        if shown is None or shown.sid != room.format() or index >= len(shown.texts) or not shown.parts:
            return  # not a line of this room (or one merged with others before a restart): ignored
        if "applied" not in item.memo:
            if shown.texts[index] is None:
                return  # already retracted: an edit racing the retraction loses
            if text is not None:
                if shown.edits >= EDITS_PER_MESSAGE or shown.image:
                    return
                shown.edits += 1
            shown.texts[index] = text
            item.memo["applied"] = True
        live = [t for t in shown.texts if t is not None]
        first = shown.parts[0]
        if live:
            # One event holds the whole new text: a longer one is cut with the visible marker.
            text = cut("\n".join(live), render.PART_SIZE)
            content = self._render(text, shown.label, shown.sender is not None, len(live))[0]
            if shown.reply_to is not None:
                content = render.replying(content, split_id(shown.reply_to)[0], shown.quote)
            if not item.memo.get("replaced"):
                await self.sender.write(room.room, Write(content=render.edit(content, first), thread=room.root,
                                                         txn=item.key, sender=shown.sender))
                item.memo["replaced"] = True
            gone = shown.parts[1:]  # the later parts of a long line: the edit holds the whole new text
        else:
            gone = list(shown.parts)
        for n, part in enumerate(gone):
            if n < item.memo.get("redacted", 0):
                continue
            await self.sender.write(room.room, Write(redacts=part, txn=f"{item.key}.r{n}", sender=shown.sender))
            item.memo["redacted"] = n + 1
            if live:
                self.relations.lines.remember(part, None)
        shown.parts = shown.parts[:1] if live else []  # a retracted line stays known, with nothing left to edit

    async def _recall(self, room: SessionRoom, event: str, label: str | None) -> Shown | None:
        """A stranger's line this run did not post (the chat resumed after a restart), read back from
        the homeserver: ours (the bot's or a ghost's) or None. Its later parts, if any, are unknown."""
        client = self.sender.client
        try:
            resp = await client.room_get_event(room.room, event)
        except Exception as exc:  # noqa: BLE001 - then the edit or retraction is not shown
            log.info("matrix: a stranger's line could not be read back: %r", exc)
            return None
        source = getattr(resp.event, "source", None) if isinstance(resp, RoomGetEventResponse) else None
        if not isinstance(source, dict) or not source.get("content"):
            return None  # gone, or already redacted
        sender = source.get("sender")
        ghosts = self.sender.ghosts
        if sender == self.sender.cfg.user_id and ghosts is None:
            shown = Shown(room.format(), label, None, [""], [event])
        elif ghosts is not None and isinstance(sender, str) and ghosts.owns(sender):
            shown = Shown(room.format(), None, sender, [""], [event])
        else:
            return None
        self.relations.lines.remember(event, shown)
        return shown

    async def _react(self, room: SessionRoom, item: Item, reaction: Reaction, sender: str | None) -> None:
        """The stranger's reaction as ours (the bot's or the ghost's); a key several strangers hold is
        sent once and redacted when the last one takes it back."""
        target, _ = split_id(reaction.ref)
        key = render.reaction_key(reaction.emoji)
        if not key:
            return
        relations = self.relations
        slot = (room.room, target, key, sender)
        ours = relations.ours.get(slot)
        if reaction.add:
            if ours is None:
                count = relations.per_target.get((room.room, target), 0) or 0
                if count >= REACTIONS_PER_MESSAGE:
                    return
                relations.per_target.remember((room.room, target), count + 1)
                ours = Ours(set())
                relations.ours.remember(slot, ours)
            ours.labels.add(reaction.stranger)
            if ours.event is None:
                sent = await self.sender.write(room.room, Write(content=render.reaction(target, key), kind="m.reaction",
                                                                txn=item.key, sender=sender))
                ours.event = sent.event_id or None
            return
        if ours is None:
            return
        ours.labels.discard(reaction.stranger)
        if ours.labels:
            return
        if ours.event is not None:
            await self.sender.write(room.room, Write(redacts=ours.event, txn=item.key, sender=sender))
        relations.ours.remember(slot, None)
        count = relations.per_target.get((room.room, target), 0) or 0
        relations.per_target.remember((room.room, target), max(0, count - 1))
