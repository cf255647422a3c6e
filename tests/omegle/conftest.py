"""Fixtures: a running Omegle-protocol test server, an HTTP client for strangers, bridge configs."""

from __future__ import annotations

import aiohttp
import pytest

from .server import OmegleTestServer


@pytest.fixture
async def server():
    async with OmegleTestServer(poll_window=0.3) as srv:
        yield srv


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield session


def omegle(*urls: str, **cfg) -> dict:
    """A bridge config whose default backend is the omegle client of `urls`."""
    fast = {"request_timeout": 2.0, "poll_timeout": 5.0, "backoff": 0.05, "retries": 2, "min_poll_interval": 0.05}
    return {
        "backends": {"omegle": {"plugin": "omegle", "servers": list(urls), **{**fast, **cfg}}},
        "bridge": {"default_backend": "omegle"},
    }
