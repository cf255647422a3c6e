"""Discord glue: a discord.py client with the /stranger command group; one thread per session."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.http import Route

from bridge.abc import Platform
from bridge.events import (
    Connected,
    Disconnected,
    Event,
    Message,
    Mode,
    Reason,
    Report,
    Room,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.outbox import Item, Outbox, OutboxPolicy, Outboxes, Permanent

from . import render
from .config import DEFAULT_API_BASE, DEFAULT_GATEWAY_URL, DiscordConfig

__all__ = ["DiscordPlatform"]

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
TYPING_EVERY = 8.0  # seconds: Discord shows typing for about 10 s; never call more often than this
WEBHOOK_NAME = "stranger-bridge"
SEEN_IDS = 4096  # inbound message / interaction ids remembered for de-duplication
HELP = (
    "**/stranger start** — meet a random stranger in a private thread (options: interests, language, mode)\n"
    "**/stranger next** — leave this stranger and meet another\n"
    "**/stranger stop** — end the chat\n"
    "**/stranger ask** — ask a question and watch two strangers discuss it\n"
    "**/stranger answer** — discuss someone's question with another stranger\n"
    "**/stranger report** — end the chat and never be paired with this stranger again\n"
    "Strangers never see your name, your server or your channel."
)


@dataclass
class ThreadInfo:
    """A session thread (or DM channel), persisted so a restart never opens a second one."""

    id: int
    owner: int
    guild: int | None
    parent: int | None  # the text channel the thread hangs off; None in DMs
    last_seen: int = 0  # the newest user message handed to the core: catch-up starts after it
    start: dict = field(default_factory=dict)  # the options of the last start, reused by "next"
    restarting: bool = False  # a Start was submitted: the USER Disconnected that follows is "next"
    catching_up: bool = False
    pending: list = field(default_factory=list)  # live messages held while catching up

    def dump(self) -> str:
        data = asdict(self)
        for key in ("restarting", "catching_up", "pending"):
            data.pop(key)
        return json.dumps(data)

    @classmethod
    def load(cls, raw: str) -> ThreadInfo:
        return cls(**json.loads(raw))


def user_key(user_id: int) -> str:
    """The opaque per-person key the core sees (never sent anywhere)."""
    return "discord:" + hashlib.sha256(str(user_id).encode()).hexdigest()[:16]


class _Client(discord.Client):
    """discord.py client whose events go to the platform's on_* methods."""

    def __init__(self, platform: DiscordPlatform, **options: Any) -> None:
        super().__init__(**options)
        self.platform = platform
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(_command_group(platform))

    async def setup_hook(self) -> None:
        await self.platform.sync_commands()

    async def on_connect(self) -> None:
        self.platform.on_identified()

    async def on_ready(self) -> None:
        self.platform.on_ready()

    async def on_message(self, message: discord.Message) -> None:
        self.platform.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        self.platform.on_edit(payload)

    async def on_raw_typing(self, payload: discord.RawTypingEvent) -> None:
        self.platform.on_typing(payload.channel_id, payload.user_id)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.component:
            await self.platform.on_button(interaction)

    async def on_raw_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        if payload.data.get("thread_metadata", {}).get("archived"):
            self.platform.on_thread_gone(payload.thread_id, "archived")

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self.platform.on_thread_gone(payload.thread_id, "deleted")

    async def on_raw_thread_member_remove(self, payload: discord.RawThreadMembersUpdate) -> None:
        info = self.platform.threads.get(payload.thread_id)
        removed = {int(x) for x in payload.data.get("removed_member_ids", [])}
        if info is not None and info.owner in removed:
            self.platform.on_thread_gone(payload.thread_id, "left")


ModeChoice = Literal["random", "ask", "answer", "group"]


def _command_group(platform: DiscordPlatform) -> app_commands.Group:
    # Offered in DMs with the bot only when dm = true (the DM refusal stays for stale registrations).
    contexts = app_commands.AppCommandContext(guild=True, dm_channel=platform.config.dm, private_channel=False)
    group = app_commands.Group(name="stranger", description="Chat with a random stranger", allowed_contexts=contexts)

    @group.command(name="start", description="Meet a random stranger (in a session thread: the next one)")
    @app_commands.describe(
        interests="Comma-separated interests to match on",
        language="Two-letter language code, e.g. en",
        mode="random, ask (watch two strangers), answer (discuss a question) or group (three people)",
    )
    async def start(
        interaction: discord.Interaction,
        interests: str | None = None,
        language: str | None = None,
        mode: ModeChoice = "random",
    ) -> None:
        await platform.cmd_start(interaction, interests=interests, language=language, mode=mode)

    @group.command(name="next", description="Leave this stranger and meet another")
    async def next_(interaction: discord.Interaction) -> None:
        await platform.cmd_next(interaction)

    @group.command(name="stop", description="End the chat")
    async def stop(interaction: discord.Interaction) -> None:
        await platform.cmd_stop(interaction)

    @group.command(name="ask", description="Ask a question and watch two strangers discuss it")
    @app_commands.describe(question="The question the strangers will discuss")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await platform.cmd_start(interaction, mode="ask", question=question)

    @group.command(name="answer", description="Discuss someone's question with another stranger")
    async def answer(interaction: discord.Interaction) -> None:
        await platform.cmd_start(interaction, mode="answer")

    @group.command(name="report", description="End the chat and never meet this stranger again")
    async def report(interaction: discord.Interaction) -> None:
        await platform.cmd_report(interaction)

    @group.command(name="help", description="What /stranger does")
    async def help_(interaction: discord.Interaction) -> None:
        if platform.first_time(interaction):
            await platform.reply(interaction, HELP)

    return group


class DiscordPlatform(Platform):
    """A Discord bot: /stranger opens a thread per session; strangers speak through a webhook."""

    Config = DiscordConfig
    #: Builds the HTTP connector of the client and of webhook calls (tests install a guarded one).
    connector_factory: ClassVar[Callable[[], aiohttp.BaseConnector] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: DiscordConfig
        self.client: _Client | None = None
        self.threads: dict[int, ThreadInfo] = {}  # open session threads (and DM rooms)
        self.by_user: dict[int, int] = {}
        self.outboxes = Outboxes(
            self,
            OutboxPolicy(platform="discord", delays=(0.5, 1.0, 2.0), slow_after=1.0, typing_every=TYPING_EVERY,
                         merge_limit=render.MERGE_LIMIT),
            metrics=self.metrics,
        )
        self.gone: set[int] = set()  # threads the user archived, left or deleted: nothing more is posted
        self.webhooks: dict[int, tuple[int, str]] = {}  # parent channel -> (webhook id, token)
        self.no_webhook: set[int] = set()
        self.newest: dict[int, int] = {}  # newest message id known per thread (webhook 5xx check)
        self.last_start: dict[int, float] = {}
        self.seen_interactions: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.seen_messages: collections.OrderedDict[int, str] = collections.OrderedDict()  # id -> content
        self.counter = 0
        self.ready_event = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._dirty: set[int] = set()
        self._flush_wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._loaded = False

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Log in, sync /stranger, and listen until cancelled."""
        cfg = self.config
        if cfg.api_base.rstrip("/") != DEFAULT_API_BASE:
            Route.BASE = cfg.api_base.rstrip("/")
        if cfg.gateway_url != DEFAULT_GATEWAY_URL:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)
        await self._load()
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.message_content = intents.guild_typing = True
        intents.dm_messages = intents.dm_typing = cfg.dm
        factory = type(self).connector_factory
        self.client = _Client(
            self,
            intents=intents,
            allowed_mentions=NONE,
            connector=factory() if factory else None,
            guild_ready_timeout=cfg.guild_ready_timeout,
            max_messages=None,
            chunk_guilds_at_startup=False,
        )
        self.session = aiohttp.ClientSession(connector=factory() if factory else None)
        flusher = asyncio.get_running_loop().create_task(self._flush_state())
        try:
            async with self.client:
                await self.client.start(cfg.token.get_secret_value())
        finally:
            flusher.cancel()
            self.outboxes.close()
            await self.session.close()

    async def ready(self) -> None:
        """Ready once the gateway said READY and the guilds arrived."""
        await self.ready_event.wait()

    async def flush(self) -> None:
        """Wait until every thread's queue is sent, then persist cursors."""
        await self.outboxes.drain()
        await self._write_dirty()

    def rooms_active(self, rooms: list[Room]) -> None:
        """Rooms the core still has sessions for: make sure they are known threads."""
        for room in rooms:
            if int(room.id) not in self.threads:
                log.info("session room %s has no thread record; it is shown but not listened to", room)

    async def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self.counter = int(await self.state.get("counter") or 0)
        for tid in json.loads(await self.state.get("threads") or "[]"):
            raw = await self.state.get(f"thread:{tid}")
            if raw:
                info = ThreadInfo.load(raw)
                self.threads[info.id] = info
                self.by_user[info.owner] = info.id

    async def sync_commands(self) -> None:
        """Publish /stranger where the config says (called once, before the gateway connects)."""
        assert self.client is not None
        tree = self.client.tree
        if self.config.command_scope == "global":
            await tree.sync()
        elif self.config.command_scope == "guilds":
            for gid in self.config.guilds:
                guild = discord.Object(gid)
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)

    # ---- persistence -------------------------------------------------------------------------

    def _persist(self, info: ThreadInfo) -> None:
        self._dirty.add(info.id)
        self._flush_wake.set()

    async def _flush_state(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            try:
                await self._write_dirty()
            except Exception:
                log.exception("could not persist Discord thread state")

    async def _write_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for tid in dirty:
            info = self.threads.get(tid)
            await self.state.set(f"thread:{tid}", info.dump() if info else None)
        if dirty:
            await self.state.set("threads", json.dumps(sorted(self.threads)))

    async def _save_now(self, info: ThreadInfo) -> None:
        self._dirty.discard(info.id)
        await self.state.set(f"thread:{info.id}", info.dump())
        await self.state.set("threads", json.dumps(sorted(self.threads)))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- gateway events ----------------------------------------------------------------------

    def on_identified(self) -> None:
        """After every IDENTIFY (not after a RESUME, which replays): fetch what the gap hid."""
        for info in self.threads.values():
            if info.guild is not None or self.config.dm:
                info.catching_up = True
                self._spawn(self._catch_up(info))

    def on_ready(self) -> None:
        self.ready_event.set()

    async def _catch_up(self, info: ThreadInfo) -> None:
        assert self.client is not None
        try:
            after = info.last_seen or info.id
            while True:
                route = Route("GET", "/channels/{channel_id}/messages", channel_id=info.id)
                batch = await self.client.http.request(route, params={"after": after, "limit": 100})
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

    def _saw(self, thread: int, mid: int) -> None:
        if mid > self.newest.get(thread, 0):
            self.newest[thread] = mid

    def on_message(self, message: discord.Message) -> None:
        if message.channel.id in self.outboxes:
            self._saw(message.channel.id, message.id)
        if message.author.bot or message.webhook_id is not None:
            return  # our own bot, our webhooks and other bots are never relayed (no loops)
        info = self.threads.get(message.channel.id)
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
        self._remember(self.seen_messages, mid, content)
        text = render.anonymise(content).strip()
        if files or stickers:
            if self.config.attachments == "links" and files:
                text = "\n".join([text, *files]).strip()
            else:
                self.outboxes.get(info.id).put_payload(
                    render.text_notice("Files and stickers are not sent to the stranger.")
                )
        if text:
            self.submit(Room(self.name, str(info.id)), Message(text))
        info.last_seen = mid
        self._persist(info)

    def on_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        info = self.threads.get(payload.channel_id)
        data = payload.data
        author = data.get("author") or {}
        if info is None or "content" not in data or int(author.get("id", 0)) != info.owner:
            return
        before = self.seen_messages.get(payload.message_id)
        if before is None or before == data["content"] or not data.get("edited_timestamp"):
            return  # unknown, unchanged (an embed unfolded), or not an edit
        self._remember(self.seen_messages, payload.message_id, data["content"])
        text = render.anonymise(data["content"]).strip()
        if text:
            self.submit(Room(self.name, str(info.id)), Message(f"* corrected: {text}"))

    def on_typing(self, channel_id: int, user_id: int) -> None:
        info = self.threads.get(channel_id)
        if info is not None and user_id == info.owner:
            self.submit(Room(self.name, str(channel_id)), Typing())

    def on_thread_gone(self, tid: int, how: str) -> None:
        """The user archived, deleted or left a session thread: the stranger is told."""
        info = self.threads.get(tid)
        if info is None:
            return
        log.info("thread %s %s by the user; ending its chat", tid, how)
        self.gone.add(tid)
        self._forget(info)
        self.submit(Room(self.name, str(tid)), Disconnected(reason=Reason.USER))

    def _forget(self, info: ThreadInfo) -> None:
        self.threads.pop(info.id, None)
        if self.by_user.get(info.owner) == info.id:
            del self.by_user[info.owner]
        self._persist(info)

    @staticmethod
    def _remember(seen: collections.OrderedDict, key: int, value: Any = None) -> None:
        seen[key] = value
        if len(seen) > SEEN_IDS:
            seen.popitem(last=False)

    # ---- commands ----------------------------------------------------------------------------

    def first_time(self, interaction: discord.Interaction) -> bool:
        """False for an interaction already handled (a gateway replay): it must not act twice."""
        if interaction.id in self.seen_interactions:
            log.info("interaction %s delivered again; ignored", interaction.id)
            return False
        self._remember(self.seen_interactions, interaction.id)
        return True

    async def reply(self, interaction: discord.Interaction, text: str) -> None:
        """An ephemeral answer (or follow-up when the interaction was deferred)."""
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE, suppress_embeds=True)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NONE, suppress_embeds=True)

    def _allowed_here(self, interaction: discord.Interaction) -> str | None:
        cfg = self.config
        if interaction.guild_id is None:
            return None if cfg.dm else "Stranger chats are not available in direct messages here."
        if cfg.guilds and interaction.guild_id not in cfg.guilds:
            return "Stranger chats are not enabled on this server."
        return None

    def _cooldown(self, user: int) -> str | None:
        now = time.monotonic()
        wait = self.last_start.get(user, -1e9) + self.config.start_cooldown - now
        if wait > 0:
            return f"Please wait {wait:.0f} s before starting again."
        self.last_start[user] = now
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
        if not self.first_time(interaction) or await self.state.get(f"interaction:{interaction.id}"):
            return  # a replay (also across a restart): the thread it opened already exists
        problem = self._allowed_here(interaction)
        if problem:
            await self.reply(interaction, problem)
            return
        user = interaction.user.id
        start = {
            "interests": [i.strip() for i in (interests or "").split(",") if i.strip()],
            "language": (language or "en").strip().lower(),
            "mode": mode,
            "question": question,
        }
        cid = interaction.channel_id or 0
        info = self.threads.get(cid)
        if info is not None:  # in a session thread: start means next
            if info.owner != user:
                await self.reply(interaction, "This chat belongs to someone else. Use /stranger start in a channel.")
                return
            await self._restart(interaction, info, start, "Looking for a new stranger…")
            return
        existing = self.by_user.get(user)
        if existing is not None:
            await self.reply(interaction, f"You already have a chat in <#{existing}>. Use /stranger next or /stranger stop there.")
            return
        if interaction.guild_id is None:
            await self._start_dm(interaction, start)
            return
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel) and getattr(channel, "type", None) is not discord.ChannelType.text:
            await self.reply(interaction, "Use /stranger start in a text channel.")
            return
        if self.config.channels and cid not in self.config.channels:
            await self.reply(interaction, "Stranger chats can't be started in this channel.")
            return
        active = sum(1 for t in self.threads.values() if t.guild == interaction.guild_id)
        if active >= self.config.max_sessions_per_guild:
            await self.reply(interaction, "Too many stranger chats are running on this server; try again later.")
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
        self._submit_start(info)
        await self.reply(interaction, f"Your chat is in <#{info.id}>.")

    async def _start_dm(self, interaction: discord.Interaction, start: dict) -> None:
        problem = self._cooldown(interaction.user.id)
        if problem:
            await self.reply(interaction, problem)
            return
        cid = interaction.channel_id or 0
        info = ThreadInfo(id=cid, owner=interaction.user.id, guild=None, parent=None, last_seen=interaction.id, start=start)
        self.threads[cid] = info
        self.by_user[info.owner] = cid
        await self._save_now(info)
        await self.state.set(f"interaction:{interaction.id}", str(cid))  # a replay after a restart is ignored
        await self.reply(interaction, "Looking for a stranger…")
        self._submit_start(info)

    async def _open_thread(self, parent: int, user: int, guild: int | None, start: dict, origin: int) -> ThreadInfo:
        assert self.client is not None
        http = self.client.http
        self.counter += 1
        await self.state.set("counter", str(self.counter))
        private = self.config.thread_visibility == "private"
        body: dict[str, Any] = {
            "name": render.thread_name(self.counter),
            "type": 12 if private else 11,
            "auto_archive_duration": self.config.auto_archive_minutes,
        }
        if private:
            body["invitable"] = False
        data = await http.request(Route("POST", "/channels/{channel_id}/threads", channel_id=parent), json=body)
        tid = int(data["id"])
        info = ThreadInfo(id=tid, owner=user, guild=guild, parent=parent, last_seen=tid, start=start)
        self.threads[tid] = info
        self.by_user[user] = tid
        await self._save_now(info)  # before anything else can fail: a restart finds this thread
        await self.state.set(f"interaction:{origin}", str(tid))
        await http.request(
            Route("PUT", "/channels/{channel_id}/thread-members/{user_id}", channel_id=tid, user_id=user)
        )
        return info

    def _submit_start(self, info: ThreadInfo) -> None:
        s = info.start
        mode = Mode(s.get("mode") or "random")
        info.restarting = True
        self.submit(
            Room(self.name, str(info.id)),
            Start(
                interests=tuple(s.get("interests") or ()),
                language=s.get("language") or "en",
                mode=mode,
                question=s.get("question"),
                answer_questions=mode is Mode.ANSWER,
                user=user_key(info.owner),
            ),
        )

    async def _restart(self, interaction: discord.Interaction, info: ThreadInfo, start: dict | None, text: str) -> None:
        problem = self._cooldown(info.owner)
        if problem:
            await self.reply(interaction, problem)
            return
        if start is not None:
            info.start = start
            self._persist(info)
        self._submit_start(info)
        await self.reply(interaction, text)

    def _target(self, interaction: discord.Interaction) -> ThreadInfo | None:
        info = self.threads.get(interaction.channel_id or 0)
        if info is not None and info.owner == interaction.user.id:
            return info
        tid = self.by_user.get(interaction.user.id)
        return self.threads.get(tid) if tid is not None else None

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
        self.submit(Room(self.name, str(info.id)), Disconnected(reason=Reason.USER))
        await self.reply(interaction, "Ending the chat.")

    async def cmd_report(self, interaction: discord.Interaction) -> None:
        if not self.first_time(interaction):
            return
        info = self._target(interaction)
        if info is None:
            await self.reply(interaction, "There is no stranger to report.")
            return
        info.restarting = False
        self.submit(Room(self.name, str(info.id)), Report())
        await self.reply(interaction, "Reported. You won't be paired with this stranger again.")

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

    # ---- output ------------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> None:
        """Queue a stranger-side event on the thread's outbox (returns at once; sent in order)."""
        tid = int(room.id)
        if tid in self.gone:
            return  # the user archived, left or deleted the thread: post nothing more there
        info = self.threads.get(tid)
        box = self.outboxes.get(tid)
        match event:
            case Message(text=text, stranger=label):
                box.typing_stop(label)
                box.put_text(label, text)
            case Typing(stranger=label):
                box.typing_start(label)
            case StoppedTyping(stranger=label):
                box.typing_stop(label)
            case Disconnected(final=True, reason=reason):
                box.typing_stop(everyone=True)
                payload = render.notice_payload(event)
                if payload:
                    box.put_payload(payload)
                next_follows = info is not None and info.restarting and reason == Reason.USER
                if info is not None and not next_follows:
                    self._end(info, box)
            case Disconnected(stranger=label):
                # One member left a group: the core drops their typing without a StoppedTyping,
                # so their indicator would otherwise be refreshed here until the whole chat ends.
                box.typing_stop(label)
                payload = render.notice_payload(event)
                if payload:
                    box.put_payload(payload)
            case _:
                if isinstance(event, Waiting | Connected) and info is not None:
                    info.restarting = False
                payload = render.notice_payload(event)
                if payload:
                    box.put_payload(payload)

    def _end(self, info: ThreadInfo, box: Outbox) -> None:
        """The chat ended and no next one follows: archive and lock the thread (unless kept open)."""
        if info.guild is None:
            # A DM is never archived, but the ended chat must not hold the user: without this, her
            # next /stranger start in a server was refused ("you already have a chat") forever.
            self._forget(info)
            return
        if self.config.keep_open:
            return
        self._forget(info)
        self.gone.add(info.id)  # our own THREAD_UPDATE(archived) must not look like the user leaving
        box.put_call(lambda: self._archive(info.id))

    async def _archive(self, tid: int) -> None:
        assert self.client is not None
        try:
            await self.client.http.request(
                Route("PATCH", "/channels/{channel_id}", channel_id=tid), json={"archived": True, "locked": True}
            )
        except discord.NotFound:
            pass

    # Sender (used by the outboxes) ------------------------------------------------------------

    async def send_text(self, thread: int, item: Item) -> None:
        marker = item.marker
        await self.post_text(thread, item.label, item.text, render.merge_note(marker) if marker else None, item.key)

    async def send_payload(self, thread: int, item: Item) -> None:
        await self.post_payload(thread, item.payload, item.key)

    async def send_typing(self, thread: int, on: bool) -> None:
        if on:  # Discord has no "stopped typing" call: the indicator ends with a message or after 10 s
            await self.post_typing(thread)

    async def post_text(self, thread: int, label: str | None, text: str, extra: str | None, nonce: str) -> None:
        info = self.threads.get(thread)
        parent = info.parent if info else None
        hook = await self._webhook(parent) if parent is not None and self.config.webhooks else None
        payloads = render.stranger_payloads(text, label, webhook=hook is not None, extra=extra)
        for index, payload in enumerate(payloads):
            part_nonce = f"{nonce}{index}"
            if hook is not None:
                try:
                    await self._execute_webhook(hook, thread, payload)
                    continue
                except _WebhookGone:
                    self.webhooks.pop(parent, None)  # type: ignore[arg-type]
                    await self.state.set(f"webhook:{parent}", None)
                    payload = render.stranger_payloads(text, label, webhook=False, extra=extra)[index]
            await self.post_payload(thread, payload, part_nonce)

    async def post_payload(self, thread: int, payload: dict, nonce: str) -> None:
        assert self.client is not None
        body = {**payload, "nonce": nonce, "enforce_nonce": True}
        try:
            data = await self.client.http.request(
                Route("POST", "/channels/{channel_id}/messages", channel_id=thread), json=body
            )
            self._saw(thread, int(data["id"]))
        except (discord.NotFound, discord.Forbidden) as exc:
            raise Permanent(str(exc)) from exc

    async def post_typing(self, thread: int) -> None:
        assert self.client is not None
        await self.client.http.request(Route("POST", "/channels/{channel_id}/typing", channel_id=thread))

    async def _webhook(self, parent: int) -> tuple[int, str] | None:
        """The one webhook of a parent channel, found or created once and remembered."""
        if parent in self.no_webhook:
            return None
        hook = self.webhooks.get(parent)
        if hook is not None:
            return hook
        raw = await self.state.get(f"webhook:{parent}")
        if raw:
            data = json.loads(raw)
            hook = self.webhooks[parent] = (int(data["id"]), data["token"])
            return hook
        assert self.client is not None and self.client.user is not None
        http = self.client.http
        try:
            found = await http.request(Route("GET", "/channels/{channel_id}/webhooks", channel_id=parent))
            mine = [
                w for w in found
                if w.get("token") and w.get("name") == WEBHOOK_NAME and str((w.get("user") or {}).get("id")) == str(self.client.user.id)
            ]
            data = mine[0] if mine else await http.request(
                Route("POST", "/channels/{channel_id}/webhooks", channel_id=parent), json={"name": WEBHOOK_NAME}
            )
        except discord.Forbidden:
            log.warning("no webhook permission in channel %s: strangers speak as the bot", parent)
            self.no_webhook.add(parent)
            return None
        hook = self.webhooks[parent] = (int(data["id"]), data["token"])
        await self.state.set(f"webhook:{parent}", json.dumps({"id": data["id"], "token": data["token"]}))
        return hook

    async def _execute_webhook(self, hook: tuple[int, str], thread: int, payload: dict) -> None:
        """POST through the webhook. Webhook calls carry no nonce, so after a 5xx the thread is read
        back first: if the message was stored, it is not sent again."""
        assert self.session is not None
        url = f"{Route.BASE}/webhooks/{hook[0]}/{hook[1]}"
        params = {"thread_id": str(thread), "wait": "true"}
        before = self.newest.get(thread, 0)  # our previous message here: anything newer is this one
        for attempt in range(5):
            async with self.session.post(url, params=params, json=payload) as resp:
                status = resp.status
                data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if status < 300:
                self._saw(thread, int((data or {}).get("id", 0)))
                return
            if status == 429:
                await asyncio.sleep(float((data or {}).get("retry_after", 1.0)))
                continue
            if status == 404:
                raise _WebhookGone()
            if status == 403:
                raise Permanent(f"webhook refused: {status}")
            if status >= 500:
                if await self._stored(thread, hook[0], payload, before):
                    return
                await asyncio.sleep(0.5 + attempt)
                continue
            raise Permanent(f"webhook answered {status}")
        raise ConnectionError("webhook kept failing")

    async def _stored(self, thread: int, webhook_id: int, payload: dict, before: int) -> bool:
        assert self.client is not None
        route = Route("GET", "/channels/{channel_id}/messages", channel_id=thread)
        recent = await self.client.http.request(route, params={"limit": 10})
        return any(
            int(m["id"]) > before
            and str(m.get("webhook_id")) == str(webhook_id)
            and m.get("content") == payload["content"]
            and m.get("author", {}).get("username") == payload.get("username")
            for m in recent
        )


class _WebhookGone(Exception):
    """The webhook was deleted: forget it and fall back to bot messages for this message."""
