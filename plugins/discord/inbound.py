"""What users do in session threads: messages, edits, typing, leaving; catch-up after a re-IDENTIFY."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.http import Route

from bridge.dedupe import SeenIds
from bridge.events import Disconnected, Message, Reason, Room, Typing

from . import render
from .threads import ThreadInfo

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["Inbound"]

log = logging.getLogger(__name__)



class Inbound:
    """Turns gateway events of session threads into user-side events for the core."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host
        self.seen_messages: SeenIds[int, str] = SeenIds(host.remember)  # id -> content (to tell an edit)

    def _submit(self, tid: int, event: Any) -> None:
        self.host.submit(Room(self.host.name, str(tid)), event)

    def on_identified(self) -> None:
        """After every IDENTIFY (not after a RESUME, which replays): fetch what the gap hid."""
        for info in self.host.threads.infos():
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
                    self._user_message(info, int(data["id"]), int(author["id"]), data.get("content", ""),
                                       [a.get("url", "") for a in data.get("attachments", [])],
                                       len(data.get("sticker_items", [])))
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

    def on_message(self, message: discord.Message) -> None:
        if message.channel.id in self.host.threads:
            self.host.sender.saw(message.channel.id, message.id)
        if message.author.bot or message.webhook_id is not None:
            return  # our own bot, our webhooks and other bots are never relayed (no loops)
        info = self.host.threads.get(message.channel.id)
        if info is None or message.author.id != info.owner:
            return
        args = (message.id, message.author.id, message.content, [a.url for a in message.attachments],
                len(message.stickers))
        if info.catching_up:
            info.pending.append(args)
            return
        self._user_message(info, *args)

    def _user_message(self, info: ThreadInfo, mid: int, author: int, content: str, files: list[str], stickers: int) -> None:
        if author != info.owner or mid <= info.last_seen or mid in self.seen_messages:
            return  # not the owner, or already handed on (live and catch-up overlap)
        self.seen_messages.remember(mid, content)
        text = render.anonymise(content).strip()
        if files or stickers:
            if self.host.config.attachments == "links" and files:
                text = "\n".join([text, *files]).strip()
            else:
                self.host.outboxes.get(info.id).put_payload(
                    render.text_notice("Files and stickers are not sent to the stranger.")
                )
        if text:
            self._submit(info.id, Message(text))
            self.host.modlog.note(info.id, "Reporter", text)
        info.last_seen = mid
        self.host.threads.persist(info)

    def on_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        info = self.host.threads.get(payload.channel_id)
        data = payload.data
        author = data.get("author") or {}
        if info is None or "content" not in data or int(author.get("id", 0)) != info.owner:
            return
        before = self.seen_messages.get(payload.message_id)
        if before is None or before == data["content"] or not data.get("edited_timestamp"):
            return  # unknown, unchanged (an embed unfolded), or not an edit
        self.seen_messages.remember(payload.message_id, data["content"])
        text = render.anonymise(data["content"]).strip()
        if text:
            self._submit(info.id, Message(f"* corrected: {text}"))
            self.host.modlog.note(info.id, "Reporter", f"* corrected: {text}")

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
