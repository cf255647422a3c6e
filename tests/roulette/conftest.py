"""Fixtures: a fresh chat-roulette test server per test, stopped afterwards."""

from __future__ import annotations

import pytest

from .server import RouletteServer


@pytest.fixture
async def roulette():
    """A factory: `await roulette(**settings)` starts a RouletteServer on a free port."""
    servers: list[RouletteServer] = []

    async def make(**settings) -> RouletteServer:
        server = RouletteServer(**settings)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()
