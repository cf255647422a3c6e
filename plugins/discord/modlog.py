"""The moderation log channel: reports and admin actions posted as the bot, and the chat lines kept for them."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import discord
from discord.http import Route

from bridge.policy.logfollow import FOLLOW_EVERY, follow_log

from . import render

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["ADMIN", "FOLLOW_EVERY", "ModLog"]

log = logging.getLogger(__name__)

ADMIN = "discord-admin"  # `by` of /stranger-admin bans: posted when made, so not again from the core's log


class ModLog:
    """Posts to `mod_log_channel`; keeps the last `mod_log_lines` lines of each live thread only when
    that is enabled (and forgets them with the thread), so nothing is kept when it is off."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host
        self.channel: int | None = host.config.mod_log_channel
        self.keep = host.config.mod_log_lines if self.channel is not None else 0
        self.usable = self.channel is not None  # False once the channel proved unknown or closed to us
        self._lines: dict[int, deque[tuple[str, str]]] = {}
        self._order = asyncio.Lock()  # one entry at a time, in the order they were made (FIFO waiters)

    # ---- the lines of each chat --------------------------------------------------------------

    def note(self, tid: int, who: str, text: str) -> None:
        """A line shown in or sent from a session thread (kept only when lines are enabled)."""
        if self.keep <= 0:
            return
        lines = self._lines.get(tid)
        if lines is None:
            lines = self._lines[tid] = deque(maxlen=self.keep)
        lines.append((who, text[: render.MOD_LOG_LINE]))

    def chat_ended(self, tid: int) -> None:
        """A new chat begins in the thread: the old chat's lines are not part of a later report."""
        self._lines.pop(tid, None)

    def forget(self, tid: int) -> None:
        self._lines.pop(tid, None)

    def lines_held(self) -> int:
        """Threads whose lines are held now (for status and bounds)."""
        return len(self._lines)

    def lines(self, tid: int) -> list[tuple[str, str]]:
        return list(self._lines.get(tid, ()))

    # ---- the channel -------------------------------------------------------------------------

    async def check(self) -> None:
        """At start-up: say clearly in the log when the bot cannot post to the channel."""
        if self.channel is None:
            return
        client = self.host.client
        assert client is not None
        problem = None
        channel = client.get_channel(self.channel)
        if channel is None:
            try:
                await client.http.request(Route("GET", "/channels/{channel_id}", channel_id=self.channel))
            except discord.NotFound:
                problem = "unknown channel (deleted, or not in a server the bot is in)"
            except discord.Forbidden:
                problem = "the bot has no access to it (403)"
            except discord.HTTPException as exc:
                log.warning("mod_log_channel %s: could not be checked (%s); reports are posted when it works",
                            self.channel, exc.status)
                return
        elif isinstance(channel, discord.abc.GuildChannel):
            perms = channel.permissions_for(channel.guild.me)
            if not (perms.view_channel and perms.send_messages):
                problem = "the bot may not send messages there (missing View Channel or Send Messages)"
        if problem is not None:
            self.usable = False
            log.error("mod_log_channel %s cannot be written: %s. Reports and admin actions are NOT posted "
                      "to a moderation log; the platform runs on.", self.channel, problem)
        else:
            log.info("moderation log: channel %s is writable", self.channel)

    def post(self, text: str, lines: list[tuple[str, str]] | None = None) -> None:
        """Post one log entry (with chat lines, when given) in the background."""
        if self.channel is None or not self.usable:
            return
        self.host.spawn(self._post(render.mod_log_payloads(text, lines or [])))

    async def follow(self, every: float = FOLLOW_EVERY) -> None:
        """Post what the core's moderation log records beyond this platform's own posts (the core's
        follower, bridge.policy.logfollow: no subject key, no repeats across a restart). When
        sharded, only the process of shard 0 follows: the processes share the core's log."""
        moderator = self.host.moderator
        if self.channel is None or moderator is None or not self.host.shards.serves(None):
            return
        await self.host.ready_event.wait()  # logged in, and the channel checked

        async def post(entry: tuple[str, str]) -> None:
            if self.usable:
                await self._post(render.mod_log_payloads(render.mod_entry_text(entry), []))

        await follow_log(moderator.sanctions, self.host.state, post, own=("discord:", ADMIN), every=every)

    async def _post(self, payloads: list[dict]) -> None:
        async with self._order:
            await self._send(payloads)

    async def _send(self, payloads: list[dict]) -> None:
        client = self.host.client
        assert client is not None and self.channel is not None
        for payload in payloads:
            try:
                await client.http.request(Route("POST", "/channels/{channel_id}/messages", channel_id=self.channel),
                                          json=payload)
            except discord.HTTPException as exc:
                log.warning("moderation log: posting to channel %s failed (%s); entry dropped", self.channel, exc.status)
                return
