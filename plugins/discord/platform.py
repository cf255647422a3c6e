"""The Discord platform: a bot whose /stranger opens a thread per session; wires client, threads and outboxes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import discord
import yarl
from discord.http import Route

from bridge.abc import Platform
from bridge.backoff import Backoff
from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Event,
    Message,
    Posted,
    Reaction,
    Reason,
    Retract,
    Room,
    StoppedTyping,
    Typing,
    Undelivered,
    Waiting,
)
from bridge.delivery import Item, OutboxPolicy
from bridge.outbox import Outbox, Outboxes

from . import render
from .admin import Admin
from .client import DiscordClient, ShardedDiscordClient
from .commands import Commands
from .config import DEFAULT_API_BASE, DEFAULT_GATEWAY_URL, DiscordConfig
from .guilds import Guilds
from .inbound import Inbound
from .lines import Line, Upload
from .modlog import FOLLOW_EVERY, ModLog
from .rich import Rich
from .sender import DiscordSender
from .shards import Shards
from .threads import ThreadInfo, Threads

__all__ = ["DiscordPlatform", "TYPING_EVERY"]

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
TYPING_EVERY = 8.0  # seconds: Discord shows typing for about 10 s; never call more often than this
RETRY = Backoff(0.5, cap=2.0, attempts=4)  # the attempts of one send (the same nonce each time)
REMEMBER = 4096  # entries each bounded memory keeps (seen messages and interactions, ended threads, starts)
CHECK_TIMEOUT = 10.0  # seconds the start-up check of the moderation log channel may take
SLOW_SEND = 1.0  # seconds: a send this slow was rate-limited or retried; merge what queued meanwhile


class DiscordPlatform(Platform):
    """A Discord bot: /stranger opens a thread per session; strangers speak through a webhook."""

    rooms_persist = True  # its rooms outlive the process: a stop may leave their hub chats for the next run

    Config = DiscordConfig

    def __init__(
        self,
        *args: Any,
        connector_factory: Callable[[], aiohttp.BaseConnector] | None = None,
        typing_every: float = TYPING_EVERY,
        retry: Backoff = RETRY,
        remember: int = REMEMBER,
        modlog_every: float = FOLLOW_EVERY,
        **kwargs: Any,
    ) -> None:
        """`connector_factory` builds the HTTP connector of the client and of webhook calls (tests
        pass a guarded one); `typing_every` is the least time between two typing calls of a thread;
        `retry` the backoff between the attempts of one send; `remember` how many entries each
        bounded memory keeps (seen messages and interactions, ended threads, handled starts);
        `modlog_every` the seconds between two looks at the core's moderation log."""
        super().__init__(*args, **kwargs)
        self.config: DiscordConfig
        self.connector_factory = connector_factory
        self.remember = remember
        self.modlog_every = modlog_every
        self.client: DiscordClient | None = None
        self.shards = Shards.of(self.config)
        self.threads = Threads(self.state, remember, self.shards)
        self._previous: list[Room] = []  # sessions a previous run left (rooms_active, before run)
        self.sender = DiscordSender(self.config, self.state, self.threads)
        policy = OutboxPolicy(platform=self.name, retry=retry, slow_after=SLOW_SEND,
                              typing_every=typing_every, merge_limit=render.MERGE_LIMIT)
        self.outboxes = Outboxes(self.sender, policy, metrics=self.metrics, on_given_up=self._given_up,
                                 on_drop=self.release)
        self.metrics.gauge_source("queue_depth", ("owner", "queue"), self._queue_depth)
        self.rich = Rich(self)
        self.sender.rich = self.rich
        self.sender.on_posted = self.rich.posted
        self.inbound = Inbound(self)
        self.commands = Commands(self)
        self.guilds = Guilds(self.name, self.state)
        self.modlog = ModLog(self)
        self.admin = Admin(self)
        self._started_once = False
        self.ready_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # ---- lifecycle ---------------------------------------------------------------------------

    def _connector(self) -> aiohttp.BaseConnector | None:
        return self.connector_factory() if self.connector_factory else None

    async def run(self) -> None:
        """Log in, sync /stranger, and listen until cancelled."""
        cfg = self.config
        if cfg.api_base.rstrip("/") != DEFAULT_API_BASE:
            Route.BASE = cfg.api_base.rstrip("/")
        if cfg.gateway_url != DEFAULT_GATEWAY_URL:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.gateway_url)
        await self.threads.load()
        self._check_previous()
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.message_content = intents.guild_typing = True
        intents.guild_reactions = True
        intents.dm_messages = intents.dm_typing = intents.dm_reactions = cfg.dm and self.shards.serves(None)
        sharding: dict[str, Any] = {}
        if self.shards.count is not None:
            sharding = {"shard_count": self.shards.count, "shard_ids": list(self.shards.ids)}
        self.client = (ShardedDiscordClient if sharding else DiscordClient)(
            self,
            **sharding,
            intents=intents,
            allowed_mentions=NONE,
            connector=self._connector(),
            guild_ready_timeout=cfg.guild_ready_timeout,
            max_messages=None,
            chunk_guilds_at_startup=False,
        )
        self.sender.client = self.client
        self.sender.session = aiohttp.ClientSession(connector=self._connector(), timeout=self.sender.timeout)
        loop = asyncio.get_running_loop()
        flusher = loop.create_task(self.threads.flush_forever())
        follower = loop.create_task(self.modlog.follow(self.modlog_every))
        try:
            async with self.client:
                await self.client.start(cfg.token.get_secret_value())
        finally:
            flusher.cancel()
            follower.cancel()
            self.outboxes.close()
            await self.sender.session.close()

    async def on_first_ready(self) -> None:
        """Once per run, when the guilds arrived: apply the servers' policy layers, check the mod log."""
        if self._started_once:
            return
        self._started_once = True
        assert self.client is not None
        if self.moderator is not None:
            await self.guilds.load_policies(self.moderator, [g.id for g in self.client.guilds])
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self.modlog.check()
        except TimeoutError:
            log.warning("mod_log_channel %s: no answer within %.0f s; not checked", self.config.mod_log_channel, CHECK_TIMEOUT)

    async def ready(self) -> None:
        """Ready once the gateway said READY and the guilds arrived."""
        await self.ready_event.wait()

    async def flush(self) -> None:
        """Wait until every thread's queue is sent, then persist cursors."""
        await self.outboxes.drain()
        await self.threads.write_dirty()

    def scope_of(self, room: Room) -> str | None:
        """The guild of a session thread: [policy.scopes."discord:GUILD_ID"] applies there."""
        info = self.threads.get(int(room.id)) if room.id.isdigit() else None
        return str(info.guild) if info is not None and info.guild is not None else None

    def rooms_active(self, rooms: list[Room]) -> None:
        """Rooms the core still has sessions for: checked against the thread records once loaded."""
        self._previous = list(rooms)

    def _check_previous(self) -> None:
        for room in self._previous:
            if int(room.id) not in self.threads:
                log.info("session room %s has no thread record; it is shown but not listened to", room)

    async def sync_commands(self) -> None:
        """Publish /stranger where the config says (called once, before the gateway connects); when
        sharded, global commands by the process of shard 0, guild commands by each guild's shard."""
        assert self.client is not None
        tree = self.client.tree
        if self.config.command_scope == "global":
            if self.shards.serves(None):
                await tree.sync()
        elif self.config.command_scope == "guilds":
            for gid in filter(self.shards.serves, self.config.guilds):
                guild = discord.Object(gid)
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background, kept referenced until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- output ------------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> None:
        """Queue a stranger-side event on the thread's outbox (returns at once; sent in order)."""
        tid = int(room.id)
        if tid in self.threads.gone:
            return  # the user archived, left or deleted the thread: post nothing more there
        # A message is queued at once (no idle check scheduled for a fresh outbox: one loop callback less).
        box = self.outboxes.get(tid, drop_unused=type(event) is not Message)
        match event:
            case Message(text=text, stranger=label, ref=ref, quote=quote, image=image):
                box.typing_stop(label)
                # A reply's quote or a picture belongs to its own message: such a line never merges.
                alone = quote is not None or image is not None
                box.put_text(label, text, group=("alone", ref or id(event)) if alone else None)
                if not box.closed and box.queue:
                    picture = Upload.of(image) if image is not None else None
                    self.sender.add_line(tid, box.queue[-1].key, Line(ref, text, quote, picture))
                if self.modlog.keep > 0:  # lines are kept only with a moderation log that wants them
                    self.modlog.note(tid, label or "Stranger", text)
            case Edit() | Retract() | Reaction():
                self.rich.deliver(tid, event)
            case Posted():
                pass  # a user-side event: never delivered to a platform
            case Typing(stranger=label):
                box.typing_start(label)
            case StoppedTyping(stranger=label):
                box.typing_stop(label)
            case Disconnected(final=True, reason=reason):
                box.typing_stop(everyone=True)
                payload = render.notice_payload(event)
                if payload:
                    box.put_payload(payload)
                info = self.threads.get(tid)
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
                if isinstance(event, Waiting | Connected) and (info := self.threads.get(tid)) is not None:
                    info.restarting = False
                payload = render.notice_payload(event)
                if payload:
                    box.put_payload(payload)

    def _queue_depth(self) -> dict[tuple[str, ...], float]:
        return {(self.name, "outbox"): float(self.outboxes.depth())}

    def release(self, tid: int) -> None:
        """Forget what was kept for a thread once its chat is over and its outbox is done."""
        if tid not in self.threads.by_id and tid not in self.outboxes:  # called after every idle outbox
            self.sender.release(tid)
            self.rich.release(tid)
            self.inbound.release(tid)
            self.threads.parents.pop(tid, None)
            self.modlog.forget(tid)

    def _given_up(self, box: Outbox, item: Item, reason: str) -> None:
        """A stranger message could not be shown: say so in the thread, once, about that message
        (the notice itself is given up silently if Discord refuses it too)."""
        if item.kind == "text":
            box.put_payload(render.undelivered_notice(item.label, item.text, item.count), notify=False, first=True)
            self.submit(Room(self.name, str(box.room)), Undelivered(item.text))  # the core tells the stranger

    def _end(self, info: ThreadInfo, box: Outbox) -> None:
        """The chat ended and no next one follows: archive and lock the thread (unless kept open)."""
        if info.guild is None:
            # A DM is never archived, but the ended chat must not hold the user: without this, her
            # next /stranger start in a server was refused ("you already have a chat") forever.
            self.threads.forget(info)
            return
        if self.config.keep_open:
            return
        self.threads.forget(info)
        self.threads.mark_gone(info.id)  # our own THREAD_UPDATE(archived) must not look like the user leaving
        box.put_call(lambda: self._archive(info.id))

    async def _archive(self, tid: int) -> None:
        assert self.client is not None
        try:
            await self.client.http.request(
                Route("PATCH", "/channels/{channel_id}", channel_id=tid), json={"archived": True, "locked": True}
            )
        except discord.NotFound:
            pass
