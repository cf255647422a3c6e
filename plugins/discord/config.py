"""The [platforms.NAME] table of a Discord platform."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from bridge.abc import PluginConfig

__all__ = ["DEFAULT_API_BASE", "DEFAULT_CDN_BASE", "DEFAULT_GATEWAY_URL", "DiscordConfig", "REMOVED"]

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"
DEFAULT_CDN_BASE = "https://cdn.discordapp.com"
REMOVED = {
    "attachments": "the option `attachments` was removed: its \"links\" setting sent Discord CDN URLs, which carry "
                   "channel ids, to strangers. Delete it; pictures are relayed re-uploaded with `images = true`.",
}


class DiscordConfig(PluginConfig):
    """One Discord bot. Empty `guilds`/`channels` mean: every guild / text channel the bot can see."""

    removed = REMOVED

    token: SecretStr
    guilds: tuple[int, ...] = ()  # guilds where /stranger works (and where commands sync with scope "guilds")
    channels: tuple[int, ...] = ()  # text channels where /stranger start may open a thread
    thread_visibility: Literal["public", "private"] = "private"
    auto_archive_minutes: Literal[60, 1440, 4320, 10080] = 1440
    keep_open: bool = False  # when a chat ends, keep the thread open for the next start (else archive+lock)
    webhooks: bool = True  # strangers speak through one channel webhook under their own name
    dm: bool = False  # /stranger in direct messages with the bot
    # Pictures (PNG, JPEG, GIF, WebP) both ways, re-encoded; off by default; in a server its admins
    # must switch them on too (/stranger-admin settings images:true). Other files: a notice.
    images: bool = False
    # A user's picture larger than this is not downloaded (the core's [bridge.images] limits apply too).
    image_max_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    cdn_base: str = DEFAULT_CDN_BASE  # user pictures are fetched only from under this address
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
    # Sharding: one token run as `shard_count` shards; this process runs `shard_ids` of them (all
    # when unset) and serves the guilds with (guild_id >> 22) % shard_count among them; DMs: shard 0.
    shard_count: int | None = Field(None, ge=1, le=65536)
    shard_ids: tuple[int, ...] | None = None

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids(cls, ids: tuple[int, ...] | None, info: ValidationInfo) -> tuple[int, ...] | None:
        if ids is None or "shard_count" not in info.data:
            return ids  # a wrong shard_count is reported on its own
        count = info.data.get("shard_count")
        if count is None:
            raise ValueError("shard_ids needs shard_count (the number of shards all processes of this token run)")
        if not ids:
            raise ValueError("shard_ids is empty: list the shards this process runs, or leave it out for all")
        if len(set(ids)) != len(ids):
            raise ValueError(f"shard_ids lists a shard twice: {list(ids)}")
        wrong = [i for i in ids if not 0 <= i < count]
        if wrong:
            raise ValueError(f"shard_ids {wrong} out of range: shards are numbered 0 to shard_count - 1 = {count - 1}")
        return tuple(sorted(ids))

