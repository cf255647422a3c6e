"""[backends.NAME] table of the hub backend."""

from __future__ import annotations

from pydantic import Field

from bridge.abc import PluginConfig

__all__ = ["HubConfig"]


class HubConfig(PluginConfig):
    """[backends.hub]: the embedded pool."""

    interest_fallback: float = Field(10.0, ge=0)  # seconds before an interests search takes anyone
    repair_cooldown: float = Field(60.0, ge=0)  # seconds before two who just parted can meet again
    scan_limit: int = Field(32, ge=1, le=1000)  # candidates looked at per bucket per arrival
    block_days: float = Field(30.0, gt=0, le=3650)  # a reported pair is not paired again for this long
    blocks_per_user: int = Field(1000, ge=1)  # a user's own reports kept (their oldest go first)
    max_blocks: int = Field(100_000, ge=1)  # blocks kept in all (the oldest go first)
    # Seconds after a stop or a crash within which a restart takes hub chats up again (0: never;
    # a stop then ends them). Only chats whose rooms outlive the process are kept through a stop.
    resume_window: float = Field(60.0, ge=0, le=86_400)
    # With a Redis store: seconds Redis may stay unreachable before this instance ends its chats
    # (one notice each); new starts are refused with a notice at once while it is unreachable.
    outage_grace: float = Field(10.0, gt=0, le=3600)
