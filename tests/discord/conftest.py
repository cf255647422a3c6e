"""Fixtures: a Discord-compatible server per test and a bridge whose discord.py client talks only to it."""

from __future__ import annotations

import contextlib
from typing import Any

import discord.gateway
import pytest
from discord.http import Route

from tests.helpers import RECORDING, running

from .fakediscord import FakeDiscord
from .guarded import GUARDED


@pytest.fixture(autouse=True)
def _guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # The platform is GuardedDiscord (every HTTP/WebSocket call through a connector that resolves
    # no host name), and the redirection of discord.py to the fake is undone after each test.
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


@pytest.fixture
async def server():
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def bridge_config(server: FakeDiscord, **discord_over: Any) -> dict[str, Any]:
    """A bridge with the (guarded) Discord platform "dc", a recording platform "rec" and the embedded hub."""
    dc = {
        "plugin": GUARDED,
        "token": "test-bot-token",
        "api_base": server.api_base,
        "gateway_url": server.gateway_url,
        "guild_ready_timeout": 0.05,
        "start_cooldown": 0,
        **discord_over,
    }
    return {
        "platforms": {"dc": dc, "rec": {"plugin": RECORDING}},
        "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "interest_fallback": 0}},
    }


@contextlib.asynccontextmanager
async def bridge(server: FakeDiscord, store=None, **discord_over: Any):
    async with running(bridge_config(server, **discord_over), store=store) as b:
        yield b
