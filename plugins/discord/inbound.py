"""What users do in session threads: messages, replies, pictures, edits, deletions, reactions, typing, leaving; catch-up after a re-IDENTIFY."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord.http import Route

from bridge.config import ImageLimits
from bridge.dedupe import SeenIds
from bridge.events import Disconnected, Edit, Message, Reaction, Reason, Retract, Room, Typing

from . import pictures, render
from .order import InOrder, ReactionPace
from .threads import ThreadInfo

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["Inbound"]

log = logging.getLogger(__name__)

REPLY = 19  # the message type of a reply
FILES_NOT_SENT = "Files and stickers are not sent to the stranger."
ONLY_PICTURES = "Only pictures (PNG, JPEG, GIF, WebP), one per message, are sent; other files and stickers are not."



class Inbound:
    """Turns gateway events of session threads into user-side events for the core."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host
        self.seen_messages: SeenIds[int, str] = SeenIds(host.remember)  # id -> content (to tell an edit)
        self.order = InOrder(self._submit)  # a message waiting for its picture holds back what follows
        self.reactions = ReactionPace(self._reaction)

    def _submit(self, tid: int, event: Any) -> None:
        self.host.submit(Room(self.host.name, str(tid)), event)

    def on_identified(self, shard: int | None = None) -> None:
        """After every IDENTIFY (not after a RESUME, which replays): fetch what the gap hid; when
        sharded, only in the threads of the shard that identified (the others' sessions went on)."""
        for info in self.host.threads.infos():
            if shard is not None and self.host.shards.shard(info.guild) != shard:
                continue
            if info.guild is not None or self.host.config.dm:
                info.catching_up = True
                self.host.spawn(self._catch_up(info))

    async def _catch_up(self, info: ThreadInfo) -> None:
        client = self.host.client
        assert client is not None
        try:
            after = info.last_seen or info.id
            while True:
                route = Route("GET", "/channels/{channel_id}/messages", channel_id=info.id)
                batch = await client.http.request(route, params={"after": after, "limit": 100})
                batch = sorted(batch, key=lambda m: int(m["id"]))
                for data in batch:
                    author = data.get("author", {})
                    if author.get("bot") or data.get("webhook_id"):
                        continue
                    reply = (data.get("message_reference") or {}).get("message_id") if data.get("type") == REPLY else None
                    self._user_message(info, int(data["id"]), int(author["id"]), data.get("content", ""),
                                       data.get("attachments", []), len(data.get("sticker_items", [])),
                                       int(reply) if reply else None)
                if len(batch) < 100:
                    break
                after = int(batch[-1]["id"])
        except discord.NotFound:
            self.on_thread_gone(info.id, "deleted")
        except Exception as exc:
            log.warning("thread %s: catch-up failed: %r", info.id, exc)
        finally:
            info.catching_up = False
            pending, info.pending = info.pending, []
            for args in sorted(pending, key=lambda a: a[0]):
                self._user_message(info, *args)

    def own_echo(self, data: dict) -> bool:
        """Whether a gateway MESSAGE_CREATE is a line this bridge posted through its own webhook in a
        session thread; its id is then noted as the thread's newest, and nothing more is done
        with it (on_message would only have noted the id: webhook messages are never relayed)."""
        webhook = data.get("webhook_id")
        if webhook is None:
            return False
        try:
            tid, mid = int(data["channel_id"]), int(data["id"])
        except (KeyError, TypeError, ValueError):
            return False  # not what Discord sends: discord.py's parse has its say
        threads = self.host.threads
        if tid not in threads.by_id:
            return False
        hook = self.host.sender.webhooks.get(threads.parent_of(tid))  # type: ignore[arg-type]
        if hook is None or str(hook[0]) != str(webhook):
            return False
        self.host.sender.saw(tid, mid)
        return True

    def on_message(self, message: discord.Message) -> None:
        if message.channel.id in self.host.threads.by_id:  # every message of every channel passes here
            self.host.sender.saw(message.channel.id, message.id)
        if message.author.bot or message.webhook_id is not None:
            return  # our own bot, our webhooks and other bots are never relayed (no loops)
        info = self.host.threads.get(message.channel.id)
        if info is None or message.author.id != info.owner:
            return
        reply = message.reference.message_id if message.type is discord.MessageType.reply and message.reference else None
        files = [a.to_dict() for a in message.attachments]
        args = (message.id, message.author.id, message.content, files, len(message.stickers), reply)
        if info.catching_up:
            info.pending.append(args)
            return
        self._user_message(info, *args)

    def _user_message(self, info: ThreadInfo, mid: int, author: int, content: str, files: list[dict], stickers: int,
                      reply: int | None = None) -> None:
        if author != info.owner or mid <= info.last_seen or mid in self.seen_messages:
            return  # not the owner, or already handed on (live and catch-up overlap)
        self.seen_messages.remember(mid, content)
        text = render.anonymise(content).strip()
        message = Message(text, ref=str(mid), reply_to=self.host.rich.message_of(reply, info.id) if reply else None)
        if (files or stickers) and self.host.config.images:
            self.order.later(info.id, self._with_files(info, message, files, stickers))
        else:
            if files or stickers:
                self._notice(info.id, FILES_NOT_SENT)
            if text:
                self.order.now(info.id, message)
        if text:
            self.host.modlog.note(info.id, "Reporter", text)
        info.last_seen = mid
        self.host.threads.persist(info)

    def _notice(self, tid: int, text: str) -> None:
        self.order.call(tid, lambda: self.host.outboxes.get(tid).put_payload(render.text_notice(text)))

    def _notice_now(self, tid: int, text: str) -> None:
        self.host.outboxes.get(tid).put_payload(render.text_notice(text))

    async def _with_files(self, info: ThreadInfo, message: Message, files: list[dict], stickers: int) -> Message | None:
        """The message with its picture fetched and re-encoded, where this server has pictures
        on; every file not sent (and a picture that fails) gets a notice."""
        if not await self.host.rich.pictures_on(info.id):
            self._notice_now(info.id, FILES_NOT_SENT)
            return message if message.text else None
        picture, others = pictures.pick(files)
        if others or stickers:
            self._notice_now(info.id, ONLY_PICTURES)
        if picture is None:
            return message if message.text else None
        session = self.host.sender.session
        assert session is not None
        try:
            image = await pictures.fetch(session, picture, self.host.config, self.host.image_limits or ImageLimits())
        except pictures.Refused as exc:
            self._notice_now(info.id, f"Your picture was not sent to the stranger. {exc}")
            return message if message.text else None
        return replace(message, image=image)

    def on_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        info = self.host.threads.get(payload.channel_id)
        data = payload.data
        author = data.get("author") or {}
        if info is None or "content" not in data or int(author.get("id", 0)) != info.owner:
            return
        before = self.seen_messages.get(payload.message_id)
        if before == data["content"] or not data.get("edited_timestamp") or payload.message_id <= info.id:
            return  # unchanged (an embed unfolded), not an edit, or older than the chat's thread
        self.seen_messages.remember(payload.message_id, data["content"])
        text = render.anonymise(data["content"]).strip()
        if text:  # an edit older than the core's map of this chat is dropped there, with no error
            self.order.now(info.id, Edit(str(payload.message_id), text))
            self.host.modlog.note(info.id, "Reporter", f"* corrected: {text}")

    def on_delete(self, channel_id: int, message_ids: list[int]) -> None:
        """The user deleted messages: the stranger's side removes them too. Deletions the bridge
        made itself (a stranger retracting a line) are not handed back."""
        info = self.host.threads.get(channel_id)
        if info is None:
            return
        for mid in sorted(message_ids):
            if mid in self.host.rich.ours or self.host.rich.is_ours(mid) or mid == info.id:
                continue
            # Not ours: the owner's message (or another member's, which the core does not know).
            self.order.now(info.id, Retract(str(mid)))

    def on_reaction(self, channel_id: int, message_id: int, user_id: int, emoji: discord.PartialEmoji, add: bool) -> None:
        """The owner reacted (or took a reaction back): bounded per thread, the latest state of
        each (message, emoji) wins when they come faster than REACTIONS_PER_SECOND."""
        info = self.host.threads.get(channel_id)
        if info is None or user_id != info.owner or not emoji.is_unicode_emoji():
            return  # custom emoji carry a server's id: never relayed
        self.reactions.put(info.id, self.host.rich.message_of(message_id, info.id), emoji.name, add)

    def _reaction(self, tid: int, ref: str, emoji: str, add: bool) -> None:
        self.order.now(tid, Reaction(ref, emoji, add))

    def release(self, tid: int) -> None:
        """The thread's chat is over: drop what waits for it."""
        self.order.release(tid)
        self.reactions.release(tid)

    def on_typing(self, channel_id: int, user_id: int) -> None:
        info = self.host.threads.get(channel_id)
        if info is not None and user_id == info.owner:
            self._submit(channel_id, Typing())

    def on_thread_gone(self, tid: int, how: str) -> None:
        """The user archived, deleted or left a session thread: the stranger is told."""
        threads = self.host.threads
        info = threads.get(tid)
        if info is None:
            return
        log.info("thread %s %s by the user; ending its chat", tid, how)
        threads.mark_gone(tid)
        threads.forget(info)
        self.host.release(tid)
        self._submit(tid, Disconnected(reason=Reason.USER))

    def on_members_removed(self, tid: int, removed: set[int]) -> None:
        """Members left a thread: when its owner did, the chat is over."""
        info = self.host.threads.get(tid)
        if info is not None and info.owner in removed:
            self.on_thread_gone(tid, "left")
