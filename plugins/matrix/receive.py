"""Homeserver events to the core: sync batches and pushes, invites, timeline messages and commands, membership, typing."""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from nio import AsyncClient, JoinedMembersResponse, JoinError, SyncResponse, TypingNoticeEvent

from bridge.abc import Submit
from bridge.events import Event, Message, Report, Room, Start, StoppedTyping, Typing
from bridge.identity import user_key

from .commands import Command, to_event
from .config import MatrixConfig
from .e2ee import refusal_reason
from .inbound import Ignore, Media, Said, classify
from .relations import Relations, UserLine, relation_of
from .rooms import RoomState, SessionRoom, server_of
from .sync import Sync
from .userrich import UserRich

if TYPE_CHECKING:  # only ghost mode receives pushes: its module is loaded with the ghosts
    from .appservice import Pushed

__all__ = ["Host", "Receiver"]

log = logging.getLogger(__name__)

_RELAYED = ("m.room.message", "m.sticker", "m.reaction", "m.room.redaction")  # event kinds users send


class Host(Protocol):
    """What the receiver needs from the platform: the client, and the room actions that also touch outboxes."""

    name: str
    submit: Submit
    client: AsyncClient | None
    ghosts: Any
    moderation: Any  # plugins.matrix.moderation.MatrixModeration
    admin: Any  # plugins.matrix.admin.Admin
    relations: Relations
    media: Any  # plugins.matrix.media.Media
    crypto: Any  # plugins.matrix.crypto.Crypto, or None without encryption

    def help_text(self) -> str: ...

    async def notice(self, rid: str, thread: str | None, text: str) -> None: ...

    async def leave(self, rid: str, reason: str) -> None: ...

    async def refuse_encrypted(self, rid: str) -> None: ...

    def removed(self, rid: str) -> None: ...

    def end_all(self, rid: str) -> None: ...


class Receiver:
    """Turns what the homeserver sends (in sync batches, or pushed in ghost mode) into core events, in order."""

    def __init__(self, host: Host, cfg: MatrixConfig, rooms: RoomState, sync: Sync) -> None:
        self.host = host
        self.cfg = cfg
        self.rooms = rooms
        self.sync = sync
        self.ignore = [re.compile(p) for p in cfg.ignore_users]
        self.rich = UserRich(self)  # edits, redactions, reactions, images

    @property
    def client(self) -> AsyncClient:
        client = self.host.client
        assert client is not None
        return client

    async def handle_sync(self, resp: SyncResponse, history: bool = False) -> None:
        """Hand one sync batch to the core. `history`: the very first sync; old messages are not relayed."""
        for rid, info in resp.rooms.invite.items():
            await self.on_invite(rid, [_stripped(e) for e in info.invite_state])
        moderation = self.host.moderation
        for rid, info in resp.rooms.join.items():
            if rid in moderation.policy_rooms:
                for ev in info.state:
                    if isinstance(getattr(ev, "source", None), dict):
                        moderation.lists.apply(rid, ev.source)
            if self.host.crypto is None and info.state and any(getattr(e, "source", {}).get("type") == "m.room.encryption" for e in info.state):
                await self.host.refuse_encrypted(rid)
                continue
            events = [e.source for e in info.timeline.events if isinstance(getattr(e, "source", None), dict)]
            if info.timeline.limited and not history and self.sync.since:
                events = await self.sync.fill_gap(self.client, rid, info.timeline.prev_batch, events)
            for source in events:
                await self.on_timeline(rid, source, history=history)
            for ephemeral in info.ephemeral:
                if isinstance(ephemeral, TypingNoticeEvent):
                    self.on_typing(rid, ephemeral.users)
        for rid, info in resp.rooms.leave.items():
            for e in info.timeline.events:
                source = getattr(e, "source", None)
                if isinstance(source, dict):
                    await self.on_timeline(rid, source, history=history)
            if not moderation.special(rid):
                self.host.removed(rid)

    async def handle_push(self, pushed: Pushed) -> None:
        """Ghost mode: hand one pushed transaction to the core (in order), then persist the seen ids."""
        me = self.cfg.user_id
        for ev in pushed.events:
            rid = ev["room_id"]
            content = ev.get("content") if isinstance(ev.get("content"), dict) else {}
            if ev.get("type") == "m.room.member" and ev.get("state_key") == me and content.get("membership") == "invite":
                if self.sync.seen_before(ev.get("event_id")):
                    continue
                state = (ev.get("unsigned") or {}).get("invite_room_state") or []
                await self.on_invite(rid, [ev, *(s for s in state if isinstance(s, dict))])
                continue
            await self.on_timeline(rid, ev, history=False)
        for rid, users in pushed.typing:
            self.on_typing(rid, list(users))
        await self.sync.save()

    def ignored(self, sender: str) -> bool:
        """Our own bot, our ghosts and configured other bots are never relayed (no loops)."""
        if sender == self.cfg.user_id:
            return True
        ghosts = self.host.ghosts
        if ghosts is not None and ghosts.owns(sender):
            return True
        return bool(self.ignore) and any(p.fullmatch(sender) for p in self.ignore)

    async def on_invite(self, rid: str, state: list[dict]) -> None:
        """Join when the inviter is allowed and the room is unencrypted; otherwise refuse with a reason."""
        me = self.cfg.user_id
        inviter = None
        encrypted = False
        for ev in state:
            if ev.get("type") == "m.room.member" and ev.get("state_key") == me:
                if (ev.get("content") or {}).get("membership") == "invite":
                    inviter = ev.get("sender")
            if ev.get("type") == "m.room.encryption":
                encrypted = True
        if inviter is None:
            return
        if not self.cfg.may_invite(inviter):
            log.warning("matrix: invite from %s refused: not in allowed_inviters", inviter)
            await self.host.leave(rid, "You are not allowed to invite this bot.")
            return
        refusal = self.host.moderation.invite_refusal(inviter)
        if refusal is not None:
            log.info("matrix: invite refused: the inviter is banned by a policy list")
            await self.host.leave(rid, refusal)
            return
        if encrypted and self.host.crypto is None:
            log.info("matrix: invite to an encrypted room refused (no encryption here)")
            await self.host.leave(rid, refusal_reason(self.cfg))
            return
        resp = await self.client.join(rid)
        if isinstance(resp, JoinError):
            log.warning("matrix: could not join an invited room: %s", resp.message)
            return
        self.rooms.joined(rid)
        await self.host.notice(rid, None, self.host.help_text())

    async def on_timeline(self, rid: str, ev: dict[str, Any], *, history: bool, decrypted_late: bool = False) -> None:
        """One timeline event, once (event ids de-duplicate replays; a late decryption is its event's first content)."""
        if not decrypted_late:
            event_id = ev.get("event_id")
            if event_id and not self.sync.seen.first_time(event_id):  # (Sync.seen_before inlined: every event)
                return
        kind = ev.get("type")
        sender = ev.get("sender") or ""
        if self.host.moderation.special(rid):
            await self.on_special(rid, ev, history=history)
            return
        if kind == "m.room.member":
            await self.on_member(rid, ev)
            return
        if kind in ("m.room.encryption", "m.room.encrypted"):
            if self.host.crypto is not None:  # nio decrypted what it could; the rest waits for its key
                if not self.ignored(sender) and not self.rooms.closed(rid):
                    await self.host.crypto.on_event(rid, ev, history=history)
                return
            await self.host.refuse_encrypted(rid)
            return
        if history or kind not in _RELAYED or self.ignored(sender):
            return
        if self.rooms.closed(rid):
            return
        content = ev.get("content")
        if not isinstance(content, dict):
            return
        if kind == "m.reaction":
            await self.rich.on_reaction(rid, ev, sender, content)
        elif kind == "m.room.redaction":
            await self.rich.on_redaction(rid, ev)
        elif "m.relates_to" not in content:  # most messages: no edit, no reply (relation_of would say so)
            await self.on_message(rid, ev, sender, content, kind, None)
        else:
            edited, reply_to, _ = relation_of(content)
            if edited is not None:
                await self.rich.on_edit(rid, sender, content, kind)
            else:
                await self.on_message(rid, ev, sender, content, kind, reply_to)

    async def on_special(self, rid: str, ev: dict[str, Any], *, history: bool) -> None:
        """An event in a policy list (rules change), or in the management room (admin commands)."""
        moderation = self.host.moderation
        if rid in moderation.policy_rooms:
            moderation.lists.apply(rid, ev)
            return
        content = ev.get("content")
        sender = ev.get("sender") or ""
        if history or ev.get("type") != "m.room.message" or self.ignored(sender) or not isinstance(content, dict):
            return
        body = content.get("body")
        if rid == moderation.management and isinstance(body, str) and self.host.admin.is_command(body.strip()):
            await self.host.admin.handle(rid, sender, body.strip())

    async def on_message(self, rid: str, ev: dict, sender: str, content: dict, kind: str, reply_to: str | None) -> None:
        """A user's message: a command, text for the stranger, or media; in thread mode only in session threads.
        `reply_to`: the event it replies to (`relation_of`), if any."""
        cfg, rooms, host = self.cfg, self.rooms, self.host
        body = content.get("body")
        admin = host.admin
        if isinstance(body, str) and admin.prefix in body and admin.is_command(body.strip()):
            await admin.handle(rid, sender, body.strip())  # refused outside the management room
            return
        what = classify(content, prefix=cfg.command_prefix, event_type=kind)
        said = type(what) is Said
        if said and cfg.mode != "thread":  # most messages: text in a room that is its own session room
            threaded = False
            sid = rid
            root = None
        else:
            if isinstance(what, Ignore):
                return
            relates = content.get("m.relates_to") if isinstance(content.get("m.relates_to"), dict) else {}
            root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
            if isinstance(what, Command) and what.name == "images":  # a room setting: anywhere in the room
                await host.notice(rid, root, await host.media.switch(rid, sender, what.rest))
                return
            threaded = cfg.mode == "thread" and not await self.is_dm(rid)
            if threaded:
                if root is not None and rooms.is_thread(rid, root):
                    rooms.last_thread.remember((rid, sender), root)
                elif root is None and isinstance(what, Command) and what.name in ("start", "ask", "answer"):
                    root = ev["event_id"]  # the command itself becomes the thread's root
                    rooms.add_thread(rid, root)
                    rooms.last_thread.remember((rid, sender), root)
                elif isinstance(what, Command):
                    await host.notice(rid, root, f"Use {cfg.command_prefix} start here to open a chat in a new thread.")
                    return
                else:
                    return  # ordinary conversation in a shared room
            else:
                root = None
            sid = rid if root is None else SessionRoom(rid, root).format()
        room = Room(host.name, sid)
        if rooms.typing:  # (nobody types in most rooms: the dict is empty then)
            self._user_stopped_typing(rid, sender)
        submit = host.submit
        if not said:
            await self._command_or_media(rid, root, sid, room, ev, sender, content, what)
            return
        assert isinstance(what, Said)
        if sid not in rooms.active and cfg.dm_autostart and not threaded and await self.is_dm(rid):
            if not await self._may_start(rid, root, sid, sender):
                return
            start = Start(user=user_key("matrix", sender), server=server_of(sender))
            rooms.started(sid, start)
            host.moderation.started(sid, sender)
            submit(room, start)
            return
        if host.moderation.keep and sid in rooms.active:  # (lines are kept only for a moderation log)
            host.moderation.note(sid, "User", what.text)
        relations = host.relations
        event_id = ev.get("event_id")
        if isinstance(event_id, str):
            relations.users.remember(event_id, UserLine(sid, sender))
        submit(room, Message(what.text, ref=event_id if isinstance(event_id, str) else None,
                             reply_to=relations.ref_of(reply_to) if reply_to else None))

    async def _command_or_media(self, rid: str, root: str | None, sid: str, room: Room, ev: dict, sender: str,
                                content: dict, what: Command | Media) -> None:
        """A command in a session room (or thread), or media posted there."""
        cfg, rooms, host = self.cfg, self.rooms, self.host
        if isinstance(what, Command):
            if what.name == "help":
                await host.notice(rid, root, host.help_text())
                return
            if what.name == "unknown":
                await host.notice(rid, root, f"Unknown command. Try {cfg.command_prefix} help.")
                return
            event = to_event(what, user=user_key("matrix", sender), last=rooms.last_start.get(sid))
            if event is None:
                return
            if isinstance(event, Start):
                if not await self._may_start(rid, root, sid, sender):
                    return
                event = dataclasses.replace(event, server=server_of(sender))  # for server bans
                rooms.started(sid, event)
                host.moderation.started(sid, sender)
            host.submit(room, event)
            if isinstance(event, Report):
                await host.moderation.reported(sid)
                told = host.moderation.report_confirmation()
                if told is not None:
                    await host.notice(rid, root, told)
            return
        if what.kind == "an image" and host.media.on(rid):
            if sid in rooms.active:
                await self.rich.image(rid, root, sid, ev, sender, content)
            return
        if sid in rooms.active:
            await host.notice(rid, root, f"You sent {what.kind}: media is not sent to strangers.")

    async def _may_start(self, rid: str, root: str | None, sid: str, sender: str) -> bool:
        """False (the user is told why) for a banned user or server, or a user at the session cap."""
        refusal = await self.host.moderation.start_refusal(sender, sid)
        if refusal is None:
            return True
        log.info("matrix: a start was refused (ban or session cap)")
        await self.host.notice(rid, root, refusal)
        return False

    async def on_member(self, rid: str, ev: dict[str, Any]) -> None:
        """Membership changes: the bot removed ends the room; the last person leaving makes the bot leave."""
        me = self.cfg.user_id
        target = ev.get("state_key")
        membership = (ev.get("content") or {}).get("membership")
        self.rooms.forget_members(rid)
        if target == me:
            if membership in ("leave", "ban"):
                self.host.removed(rid)
            return
        if membership not in ("leave", "ban") or self.rooms.is_gone(rid):
            return
        members = await self.members(rid)
        people = {m for m in members if m != me and not self.ignored(m)}
        if not people:
            log.info("matrix: nobody left in a session room; leaving it")
            self.host.end_all(rid)
            await self.host.leave(rid, "Nobody is left in this room.")

    def on_typing(self, rid: str, users: list[str]) -> None:
        """The room's typing users now: each change becomes Typing / StoppedTyping of that user's session."""
        now = frozenset(u for u in users if not self.ignored(u))
        before = self.rooms.typing.get(rid, frozenset())
        self.rooms.set_typing(rid, now)
        for user in now - before:
            self._typing_changed(rid, user, Typing())
        for user in before - now:
            self._typing_changed(rid, user, StoppedTyping())

    def _typing_changed(self, rid: str, user: str, event: Event) -> None:
        rooms = self.rooms
        if self.cfg.mode == "thread" and rooms.has_threads(rid):
            root = rooms.last_thread.get((rid, user))
            sid = SessionRoom(rid, root).format() if root else None
        else:
            sid = rid
        if sid is not None and sid in rooms.active:
            self.host.submit(Room(self.host.name, sid), event)

    def _user_stopped_typing(self, rid: str, user: str) -> None:
        # A message implies the user stopped typing (the core does the same on its side).
        current = self.rooms.typing.get(rid)
        if current and user in current:
            self.rooms.set_typing(rid, current - {user})

    async def members(self, rid: str) -> frozenset[str]:
        """The room's joined members (cached until a member event)."""
        cached = self.rooms.members.get(rid)
        if cached is not None:
            return cached
        resp = await self.client.joined_members(rid)
        if isinstance(resp, JoinedMembersResponse):
            found = frozenset(m.user_id for m in resp.members)
            self.rooms.members.remember(rid, found)
            return found
        return frozenset({self.cfg.user_id, "?"})  # unknown: assume somebody is there

    async def is_dm(self, rid: str) -> bool:
        """True for a room of the bot and one person (ghosts not counted)."""
        members = await self.members(rid)
        ghosts = self.host.ghosts
        if ghosts is not None:
            members = frozenset(m for m in members if not ghosts.owns(m))  # ghosts come and go
        return len([m for m in members if not self.ignored(m)]) == 1 and len(members) <= 2


def _stripped(event: Any) -> dict[str, Any]:
    """An invite-state event as a dict (nio keeps the membership out of `source`)."""
    source = dict(getattr(event, "source", None) or {})
    membership = getattr(event, "membership", None)
    if membership is not None:
        source["content"] = {**(source.get("content") or {}), "membership": membership}
    return source
