"""The discord.py client: gateway events handed to the platform's inbound and command handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from .admin import admin_group
from .tree import command_group

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["DiscordClient", "ShardedDiscordClient"]


class DiscordClient(discord.Client):
    """discord.py client whose events go to the platform's Inbound and Commands."""

    def __init__(self, platform: DiscordPlatform, **options: Any) -> None:
        super().__init__(**options)
        self.platform = platform
        self.inbound = platform.inbound
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(command_group(platform.commands, platform.config.dm))
        self.tree.add_command(admin_group(platform.admin))
        # Every stranger line the bridge posts through a webhook comes back as a MESSAGE_CREATE, of
        # which only its id matters (the thread's newest message): such an echo skips discord.py's
        # parse into a Message (author, member, embeds, a task to dispatch it), the costliest part
        # of showing a line. Any other message is parsed as before. (discord.py's table of event
        # parsers, 2.x; a version without it parses every echo, which is only slower.)
        parsers = getattr(self._connection, "parsers", None)
        parse = parsers.get("MESSAGE_CREATE") if isinstance(parsers, dict) else None
        if parse is not None:

            def message_create(data: dict) -> None:
                if not self.inbound.own_echo(data):
                    parse(data)

            parsers["MESSAGE_CREATE"] = message_create

    async def setup_hook(self) -> None:
        await self.platform.sync_commands()

    async def on_connect(self) -> None:
        self.inbound.on_identified()

    async def on_ready(self) -> None:
        await self.platform.on_first_ready()
        self.platform.ready_event.set()
        self.platform.metrics.set_ready(self.platform.name, True)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        # A server that had the bot before gets its stored policy layer back.
        if self.platform.moderator is not None:
            await self.platform.guilds.load_policies(self.platform.moderator, [guild.id])

    async def on_resumed(self) -> None:
        self.platform.metrics.set_ready(self.platform.name, True)

    async def on_disconnect(self) -> None:
        # The gateway is gone until discord.py resumes or identifies again: say so on /metrics.
        if self.platform.ready_event.is_set():
            self.platform.metrics.set_ready(self.platform.name, False)

    async def on_message(self, message: discord.Message) -> None:
        self.inbound.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        self.inbound.on_edit(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.inbound.on_delete(payload.channel_id, [payload.message_id])

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        self.inbound.on_delete(payload.channel_id, list(payload.message_ids))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.inbound.on_reaction(payload.channel_id, payload.message_id, payload.user_id, payload.emoji, True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.inbound.on_reaction(payload.channel_id, payload.message_id, payload.user_id, payload.emoji, False)

    async def on_raw_typing(self, payload: discord.RawTypingEvent) -> None:
        self.inbound.on_typing(payload.channel_id, payload.user_id)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.component:
            await self.platform.commands.on_button(interaction)

    async def on_raw_thread_update(self, payload: discord.RawThreadUpdateEvent) -> None:
        if payload.data.get("thread_metadata", {}).get("archived"):
            self.inbound.on_thread_gone(payload.thread_id, "archived")

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self.inbound.on_thread_gone(payload.thread_id, "deleted")

    async def on_raw_thread_member_remove(self, payload: discord.RawThreadMembersUpdate) -> None:
        removed = {int(x) for x in payload.data.get("removed_member_ids", [])}
        self.inbound.on_members_removed(payload.thread_id, removed)


class ShardedDiscordClient(DiscordClient, discord.AutoShardedClient):
    """The same client over discord.py's AutoShardedClient: one gateway connection per shard id it runs."""

    def __init__(self, platform: DiscordPlatform, **options: Any) -> None:
        super().__init__(platform, **options)
        self.down: set[int] = set()  # shards without a gateway session: /metrics says ready when none

    async def on_connect(self) -> None:
        pass  # each shard's IDENTIFY is on_shard_connect: only its threads are caught up

    async def on_shard_connect(self, shard_id: int) -> None:
        self.inbound.on_identified(shard_id)

    async def on_disconnect(self) -> None:
        pass  # on_shard_disconnect says which shard

    async def on_resumed(self) -> None:
        pass  # on_shard_resumed says which shard

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.down.add(shard_id)
        await super().on_disconnect()

    async def on_shard_ready(self, shard_id: int) -> None:
        self._shard_up(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._shard_up(shard_id)

    def _shard_up(self, shard_id: int) -> None:
        self.down.discard(shard_id)
        if not self.down and self.platform.ready_event.is_set():
            self.platform.metrics.set_ready(self.platform.name, True)
