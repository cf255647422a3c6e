"""The [platforms.NAME] table of a Discord platform."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from bridge.abc import PluginConfig

__all__ = ["DEFAULT_API_BASE", "DEFAULT_GATEWAY_URL", "DiscordConfig"]

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"


class DiscordConfig(PluginConfig):
    """One Discord bot. Empty `guilds`/`channels` mean: every guild / text channel the bot can see."""

    token: SecretStr
    guilds: tuple[int, ...] = ()  # guilds where /stranger works (and where commands sync with scope "guilds")
    channels: tuple[int, ...] = ()  # text channels where /stranger start may open a thread
    thread_visibility: Literal["public", "private"] = "private"
    auto_archive_minutes: Literal[60, 1440, 4320, 10080] = 1440
    keep_open: bool = False  # when a chat ends, keep the thread open for the next start (else archive+lock)
    webhooks: bool = True  # strangers speak through one channel webhook under their own name
    dm: bool = False  # /stranger in direct messages with the bot
    attachments: Literal["drop", "links"] = "drop"  # user files/stickers: a notice, or their links
    max_sessions_per_guild: int = Field(50, ge=1)
    start_cooldown: float = Field(3.0, ge=0)  # seconds between two starts (or nexts) of one user
    command_scope: Literal["global", "guilds", "off"] = "global"  # where /stranger is synced at start
    api_base: str = DEFAULT_API_BASE
    gateway_url: str = DEFAULT_GATEWAY_URL
    guild_ready_timeout: float = Field(2.0, ge=0)  # discord.py's wait for GUILD_CREATEs after READY
    # Moderation log: a text channel where reports and /stranger-admin actions are posted; none: off.
    mod_log_channel: int | None = None
    # Lines of the reported chat posted with a report (0: none; opt-in; users are told when on).
    mod_log_lines: int = Field(0, ge=0, le=20)
    request_timeout: float = Field(15.0, gt=0, allow_inf_nan=False)  # seconds a webhook call may take; then read back and retried
