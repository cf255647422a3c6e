"""What /stranger commands and session buttons do, with their policy: where allowed, cooldowns, replays."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord.http import Route

from bridge.bucket import TokenBucket
from bridge.dedupe import SeenIds
from bridge.events import Disconnected, Mode, Reason, Report, Room, Start
from bridge.identity import user_key
from bridge.policy.sanctions import ban_notice
from bridge.policy.timespan import format_duration

from . import render
from .threads import ThreadInfo

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["Commands", "REPORT_SHARED"]

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
REPORT_SHARED = "Your report shared the last {n} lines of the chat with this bridge's moderators."


class Commands:
    """What /stranger and the buttons do: open, restart and end session threads."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host
        self.config = host.config
        self.remember = host.remember
        self.cooldowns: dict[int, TokenBucket] = {}  # user -> one start per start_cooldown (only while it runs)
        self.seen_interactions: SeenIds[int, None] = SeenIds(self.remember)
        # The newest start interaction handled by a previous run, and by any run (persisted as "interactions", per shard set).
        self._newest_before: int | None = None
        self._newest = 0

    def first_time(self, interaction: discord.Interaction) -> bool:
        """False for an interaction already handled (a gateway replay): it must not act twice."""
        if not self.seen_interactions.first_time(interaction.id):
            log.info("interaction %s delivered again; ignored", interaction.id)
            return False
        return True

    async def _start_handled(self, iid: int) -> bool:
        """Whether a start interaction was handled by a previous run (this run's replays are seen ids).

        Interaction ids are snowflakes, which grow with time, so one persisted number (the newest
        start a run handled) tells a replay from an earlier run: no list to rewrite on every start.
        A start that reached the previous run but was never handled is also taken for a replay; its
        token expires within minutes anyway, and the user simply starts again.
        """
        if self._newest_before is None:
            raw = await self.host.state.get(self.host.shards.key("interactions"))
            self._newest_before = self._newest = _newest_handled(raw)
        return iid <= self._newest_before

    async def _start_done(self, iid: int) -> None:
        """Persist that this start was handled, so a replay after a restart is ignored."""
        await self._start_handled(iid)
        if iid > self._newest:
            self._newest = iid
            await self.host.state.set(self.host.shards.key("interactions"), str(iid))

    async def reply(self, interaction: discord.Interaction, text: str) -> None:
        """An ephemeral answer (or follow-up when the interaction was deferred)."""
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE, suppress_embeds=True)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NONE, suppress_embeds=True)

    def _room(self, info: ThreadInfo) -> Room:
        return Room(self.host.name, str(info.id))

    def _allowed_here(self, interaction: discord.Interaction) -> str | None:
        cfg = self.config
        if interaction.guild_id is None:
            return None if cfg.dm else "Stranger chats are not available in direct messages here."
        if cfg.guilds and interaction.guild_id not in cfg.guilds:
            return "Stranger chats are not enabled on this server."
        return None

    def _cooldown(self, user: int) -> str | None:
        every = self.config.start_cooldown
        if every <= 0:
            return None
        buckets = self.cooldowns
        bucket = buckets.get(user)
        if bucket is not None and (wait := bucket.wait_time()) > 0:
            return f"Please wait {wait:.0f} s before starting again."
        if bucket is None:
            if len(buckets) >= self.remember:  # only cooldowns still running matter: forget the others
                for key in [k for k, b in buckets.items() if b.wait_time() == 0]:
                    del buckets[key]
            bucket = buckets[user] = TokenBucket(1.0 / every, 1)
        bucket.spend()
        return None

    async def cmd_start(
        self,
        interaction: discord.Interaction,
        *,
        interests: str | None = None,
        language: str | None = None,
        mode: str = "random",
        question: str | None = None,
    ) -> None:
        if not self.first_time(interaction) or await self._start_handled(interaction.id):
            return  # a replay (also across a restart): the thread it opened already exists
        problem = self._allowed_here(interaction)
        if problem:
            await self.reply(interaction, problem)
            return
        threads = self.host.threads
        user = interaction.user.id
        start = {
            "interests": [i.strip() for i in (interests or "").split(",") if i.strip()],
            "language": (language or "en").strip().lower(),
            "mode": mode,
            "question": question,
        }
        cid = interaction.channel_id or 0
        info = threads.get(cid)
        if info is not None:  # in a session thread: start means next
            if info.owner != user:
                await self.reply(interaction, "This chat belongs to someone else. Use /stranger start in a channel.")
                return
            await self._restart(interaction, info, start, "Looking for a new stranger…")
            return
        existing = threads.of_user(user)
        if existing is not None:
            await self.reply(interaction, f"You already have a chat in <#{existing}>. Use /stranger next or /stranger stop there.")
            return
        if interaction.guild_id is None:
            problem = await self._start_rules(None, user, start)
            if problem:
                await self.reply(interaction, problem)
                return
            await self._start_dm(interaction, start)
            return
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel) and getattr(channel, "type", None) is not discord.ChannelType.text:
            await self.reply(interaction, "Use /stranger start in a text channel.")
            return
        if self.config.channels and cid not in self.config.channels:
            await self.reply(interaction, "Stranger chats can't be started in this channel.")
            return
        if threads.in_guild(interaction.guild_id) >= self.config.max_sessions_per_guild:
            await self.reply(interaction, "Too many stranger chats are running on this server; try again later.")
            return
        problem = await self._start_rules(interaction.guild_id, user, start)
        if problem:
            await self.reply(interaction, problem)
            return
        problem = self._cooldown(user)
        if problem:
            await self.reply(interaction, problem)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            info = await self._open_thread(cid, user, interaction.guild_id, start, interaction.id)
        except discord.HTTPException as exc:
            log.warning("could not open a thread in channel %s: %s", cid, exc)
            await self.reply(interaction, "I couldn't open a thread here (missing permissions?).")
            return
        await self._submit_start(info)
        await self.reply(interaction, f"Your chat is in <#{info.id}>.")

    async def _start_rules(self, guild: int | None, user: int, start: dict) -> str | None:
        """The refusal of a start (a ban; an account too young for the server), or None with the
        server's pairing limits written into `start` (so "next" and a restart keep them)."""
        moderator = self.host.moderator
        if moderator is not None:  # refused here, before a thread is opened for nothing
            ban = await moderator.sanctions.check(user_key("discord", user))
            if ban is not None:
                return ban_notice(ban, moderator.sanctions.clock())
        if guild is None:
            return None
        settings = await self.host.guilds.settings(guild)
        if settings.min_account_age > 0:
            age = time.time() - discord.utils.snowflake_time(user).timestamp()  # the id holds its creation time
            if age < settings.min_account_age:
                return (f"This server lets Discord accounts start stranger chats once they are "
                        f"{format_duration(settings.min_account_age)} old; yours is younger. No chat was started.")
        start["scope"] = f"{self.host.name}:{guild}"
        start["accept"] = list(settings.accept(self.host.name, guild))
        return None

    async def _start_dm(self, interaction: discord.Interaction, start: dict) -> None:
        problem = self._cooldown(interaction.user.id)
        if problem:
            await self.reply(interaction, problem)
            return
        cid = interaction.channel_id or 0
        info = ThreadInfo(id=cid, owner=interaction.user.id, guild=None, parent=None, last_seen=interaction.id, start=start)
        self.host.threads.add(info)
        await self.host.threads.save_now(info)
        await self._start_done(interaction.id)
        await self.reply(interaction, "Looking for a stranger…")
        await self._submit_start(info)

    async def _open_thread(self, parent: int, user: int, guild: int | None, start: dict, origin: int) -> ThreadInfo:
        client = self.host.client
        assert client is not None
        http = client.http
        threads = self.host.threads
        number = await threads.next_number()
        private = self.config.thread_visibility == "private"
        body: dict[str, Any] = {
            "name": render.thread_name(number),
            "type": 12 if private else 11,
            "auto_archive_duration": self.config.auto_archive_minutes,
        }
        if private:
            body["invitable"] = False
        data = await http.request(Route("POST", "/channels/{channel_id}/threads", channel_id=parent), json=body)
        tid = int(data["id"])
        info = ThreadInfo(id=tid, owner=user, guild=guild, parent=parent, last_seen=tid, start=start)
        threads.add(info)
        await threads.save_now(info)  # before anything else can fail: a restart finds this thread
        await self._start_done(origin)
        await http.request(
            Route("PUT", "/channels/{channel_id}/thread-members/{user_id}", channel_id=tid, user_id=user)
        )
        return info

    async def _submit_start(self, info: ThreadInfo) -> None:
        s = info.start
        mode = Mode(s.get("mode") or "random")
        info.restarting = True
        self.host.modlog.chat_ended(info.id)
        self.host.submit(
            self._room(info),
            Start(
                interests=tuple(s.get("interests") or ()),
                language=s.get("language") or "en",
                mode=mode,
                question=s.get("question"),
                answer_questions=mode is Mode.ANSWER,
                user=user_key("discord", info.owner),
                scope=s.get("scope"),
                accept=tuple(s.get("accept") or ()),
            ),
        )
        await self.host.guilds.count(info.guild, "sessions")

    async def _restart(self, interaction: discord.Interaction, info: ThreadInfo, start: dict | None, text: str) -> None:
        start = dict(start if start is not None else info.start)
        problem = await self._start_rules(info.guild, info.owner, start)  # settings may have changed since
        if problem is None:
            problem = self._cooldown(info.owner)
        if problem:
            await self.reply(interaction, problem)
            return
        if start != info.start:
            info.start = start
            self.host.threads.persist(info)
        await self._submit_start(info)
        await self.reply(interaction, text)

    def _target(self, interaction: discord.Interaction) -> ThreadInfo | None:
        threads = self.host.threads
        info = threads.get(interaction.channel_id or 0)
        if info is not None and info.owner == interaction.user.id:
            return info
        tid = threads.of_user(interaction.user.id)
        return threads.get(tid) if tid is not None else None

    async def cmd_next(self, interaction: discord.Interaction) -> None:
        if not self.first_time(interaction):
            return
        info = self._target(interaction)
        if info is None:
            await self.reply(interaction, "You have no stranger chat. Use /stranger start.")
            return
        await self._restart(interaction, info, None, "Looking for a new stranger…")

    async def cmd_stop(self, interaction: discord.Interaction) -> None:
        if not self.first_time(interaction):
            return
        info = self._target(interaction)
        if info is None:
            await self.reply(interaction, "You have no stranger chat.")
            return
        info.restarting = False
        self.host.submit(self._room(info), Disconnected(reason=Reason.USER))
        await self.reply(interaction, "Ending the chat.")

    async def cmd_report(self, interaction: discord.Interaction, reason: str | None = None) -> None:
        if not self.first_time(interaction):
            return
        info = self._target(interaction)
        if info is None:
            await self.reply(interaction, "There is no stranger to report.")
            return
        info.restarting = False
        reason = " ".join(reason.split())[:200] if reason else None
        self.host.submit(self._room(info), Report(reason))
        modlog = self.host.modlog
        lines = modlog.lines(info.id) if modlog.keep > 0 else []
        where = f"<#{info.id}>" if info.guild is not None else "a direct message"
        why = f" Reason: {render.neutralise(reason)}" if reason else ""
        modlog.post(f"**Report** by {interaction.user.mention} in {where}.{why}", lines)
        await self.host.guilds.count(info.guild, "reports")
        # What the report leads to depends on the stranger service; the core says it in the thread.
        text = "Reported. The chat ends; the thread says what happens next."
        if modlog.keep > 0 and modlog.usable:
            text += " " + REPORT_SHARED.format(n=modlog.keep)
        await self.reply(interaction, text)

    async def on_button(self, interaction: discord.Interaction) -> None:
        custom_id = (interaction.data or {}).get("custom_id")
        if custom_id not in render.BUTTONS:
            return
        if custom_id == "stranger:next":
            await self.cmd_next(interaction)
        elif custom_id == "stranger:stop":
            await self.cmd_stop(interaction)
        else:
            await self.cmd_report(interaction)


def _newest_handled(raw: str | None) -> int:
    """The persisted newest handled start; older versions kept a JSON map of recent ids instead."""
    if not raw:
        return 0
    try:
        found = json.loads(raw)
    except ValueError:
        log.warning("discord: the stored newest handled start is unreadable; ignored")
        return 0
    if isinstance(found, int):
        return found
    if isinstance(found, dict):
        return max((int(k) for k in found if str(k).isdigit()), default=0)
    return 0
