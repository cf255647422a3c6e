"""The Discord platform as the tests run it: every HTTP call through a connector that resolves no host name."""

from __future__ import annotations

from typing import Any, ClassVar

from plugins.discord.platform import DiscordPlatform

from .fakediscord import guarded_connector

__all__ = ["GUARDED", "GuardedDiscord"]


class GuardedDiscord(DiscordPlatform):
    """DiscordPlatform built with the guarded connector (and any `options` a test sets)."""

    options: ClassVar[dict[str, Any]] = {}  # more constructor parameters, e.g. {"typing_every": 0.2}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, connector_factory=guarded_connector, **{**self.options, **kwargs})


GUARDED = "tests.discord.guarded:GuardedDiscord"
