"""Which guilds this process serves when one bot token runs as several shards, and its state keys."""

from __future__ import annotations

from dataclasses import dataclass

from .config import DiscordConfig

__all__ = ["Shards", "shard_of"]


def shard_of(guild: int | None, count: int) -> int:
    """Discord's rule: a guild's events go to shard (guild_id >> 22) % count; DMs to shard 0."""
    return 0 if guild is None else (guild >> 22) % count


@dataclass(frozen=True)
class Shards:
    """The shards this process runs: `count` None means unsharded (one connection, every guild)."""

    count: int | None = None
    ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, config: DiscordConfig) -> Shards:
        if config.shard_count is None:
            return cls()
        return cls(config.shard_count, config.shard_ids or tuple(range(config.shard_count)))

    @property
    def split(self) -> bool:
        """Whether other processes may run other shards of this token (state keys are then per shard)."""
        return self.count is not None and self.count > 1

    def shard(self, guild: int | None) -> int:
        return shard_of(guild, self.count) if self.count is not None else 0

    def serves(self, guild: int | None) -> bool:
        """Whether this process receives (and serves) the guild's events; None: direct messages."""
        return self.count is None or self.shard(guild) in self.ids

    def key(self, name: str) -> str:
        """A state key only this process writes: processes of one token run disjoint shard ids,
        so the lowest of them names the process's own key (no read-modify-write of a shared value)."""
        return f"{name}:{self.ids[0]}/{self.count}" if self.split else name

    def keys(self, name: str) -> dict[int, str]:
        """One state key per shard this process runs (a shard moved to another process takes its key along)."""
        if not self.split:
            return {0: name}
        return {sid: f"{name}:{sid}/{self.count}" for sid in self.ids}
