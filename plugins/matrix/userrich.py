"""The user side of the rich relay: edits, redactions, reactions and images of a room's users, to the core."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nio import RoomGetEventResponse

from bridge.events import Edit, Message, Reaction, Retract, Room

from .inbound import Said, classify, scrub
from .relations import EDITS_PER_MESSAGE, UserLine, UserReaction, annotation_of, redacted_of, relation_of
from .render import reaction_key
from .rooms import SessionRoom

if TYPE_CHECKING:
    from .receive import Receiver

__all__ = ["UserRich"]

log = logging.getLogger(__name__)


class UserRich:
    """What the receiver hands the rich relay: it reads relations and the bounded maps, and submits."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver  # its client, its members and ignore rules
        self.host = receiver.host
        self.rooms = receiver.rooms
        self.cfg = receiver.cfg

    async def image(self, rid: str, root: str | None, sid: str, ev: dict, sender: str, content: dict) -> None:
        """A user's m.image where images are on: downloaded, re-encoded (no metadata), handed in;
        refused with the reason told to the user. Its file name (the body) never crosses."""
        image, refusal = await self.host.media.fetch(content)
        if image is None:
            await self.host.notice(rid, root, f"Your image was not sent to the stranger: {refusal}")
            return
        event_id = ev.get("event_id")
        if isinstance(event_id, str):
            self.host.relations.users.remember(event_id, UserLine(sid, sender))
        _, reply_to, _ = relation_of(content)
        ref = event_id if isinstance(event_id, str) else None
        reply = self.host.relations.ref_of(reply_to) if reply_to else None
        self.host.submit(Room(self.host.name, sid), Message("", ref=ref, reply_to=reply, image=image))

    async def recall(self, rid: str, target: str) -> UserLine | None:
        """Where an event this run did not relay belongs (older than the map, or from before a
        restart), and who sent it, read back from the homeserver; None when it is not in a session."""
        found = self.host.relations.users.get(target)
        if found is not None:
            return found
        try:
            resp = await self.receiver.client.room_get_event(rid, target)
        except Exception as exc:  # noqa: BLE001 - then it is simply not relayed
            log.info("matrix: an event could not be read back: %r", exc)
            return None
        if not isinstance(resp, RoomGetEventResponse) or not isinstance(getattr(resp.event, "source", None), dict):
            return None
        source = resp.event.source
        content = source.get("content") if isinstance(source.get("content"), dict) else {}
        root = relation_of(content)[2]
        if self.cfg.mode == "thread" and not await self.receiver.is_dm(rid):
            if root is None or not self.rooms.is_thread(rid, root):
                return None
            sid = SessionRoom(rid, root).format()
        else:
            sid = rid
        sender = source.get("sender")
        return UserLine(sid, sender) if isinstance(sender, str) else None

    async def on_edit(self, rid: str, sender: str, content: dict, kind: str) -> None:
        """An `m.replace` of the user's own message in a live chat becomes an Edit (its new content)."""
        target, _, _ = relation_of(content)
        line = await self.recall(rid, target) if target else None
        if line is None or line.sender != sender or line.sid not in self.rooms.active:
            return  # unknown (older than the map, an earlier run), somebody else's, or the chat ended
        what = classify(content, prefix=self.cfg.command_prefix, event_type=kind)
        if not isinstance(what, Said) or line.edits >= EDITS_PER_MESSAGE:
            return
        line.edits += 1
        self.host.relations.users.remember(target, line)
        text = what.text.removeprefix("(correction) ")
        self.host.moderation.note(line.sid, "User", text)
        self.host.submit(Room(self.host.name, line.sid), Edit(target, text))

    async def on_redaction(self, rid: str, ev: dict) -> None:
        """A redaction: of a user's reaction, its removal; of a user's message, a Retract.

        A stranger's line redacted by a room moderator stays on the stranger's side: it is not theirs to retract.
        """
        target = redacted_of(ev)
        if target is None:
            return
        relations = self.host.relations
        reaction = relations.reactions.get(target)
        if reaction is not None:
            relations.reactions.remember(target, None)
            if reaction.sid in self.rooms.active:
                self.host.submit(Room(self.host.name, reaction.sid), Reaction(reaction.ref, reaction.key, add=False))
            return
        if relations.lines.get(target) is not None:
            return  # a stranger's line: not the user's to retract
        line = await self.recall(rid, target)
        if line is not None and line.sid in self.rooms.active and not self.receiver.ignored(line.sender):
            relations.users.remember(target, None)
            self.host.submit(Room(self.host.name, line.sid), Retract(target))

    async def on_reaction(self, rid: str, ev: dict, sender: str, content: dict) -> None:
        """A user's reaction to a message of the chat (theirs or the stranger's), bounded per second."""
        found = annotation_of(content)
        event_id = ev.get("event_id")
        if found is None or not isinstance(event_id, str):
            return
        target, raw = found
        relations = self.host.relations
        key = reaction_key(scrub(raw))
        if not key:
            return
        sid = relations.sid_of(target)
        if sid is None and any(s == rid or s.startswith(rid + SessionRoom.SEP) for s in self.rooms.active):
            allowed, _ = relations.reaction_allowed(sender, rid)  # each read-back is paid for
            known = await self.recall(rid, target) if allowed else None
            sid = known.sid if known is not None else None
        if sid is None or sid not in self.rooms.active:
            return
        allowed, tell = relations.reaction_allowed(sender, sid)
        if not allowed:
            if tell:
                log.info("matrix: reactions dropped: a user sent too many at once")
                await self.host.notice(rid, SessionRoom.parse(sid).root,
                                       "Some of your reactions were not sent to the stranger: too many at once.")
            return
        ref = relations.ref_of(target)
        relations.reactions.remember(event_id, UserReaction(sid, ref, key))
        self.host.submit(Room(self.host.name, sid), Reaction(ref, key))
