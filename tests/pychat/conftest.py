"""Fixtures: a fresh pychat test server per test, stopped afterwards."""

from __future__ import annotations

import pytest

from .server import PychatServer


@pytest.fixture
async def pychat():
    """A factory: `await pychat(**settings)` starts a PychatServer; its redirect port is `.port`."""
    servers: list[PychatServer] = []

    async def make(**settings) -> PychatServer:
        server = PychatServer(**settings)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()
