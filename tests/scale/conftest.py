"""Scale-out tests get a real redis-server per test (tests/redisproc.py) and bridges sharing it."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from bridge.app import Bridge
from tests.helpers import RECORDING, config
from tests.redisproc import redis_server

from .daemon import kill_leftovers

__all__ = ["instances", "redis_server"]

@pytest.fixture(autouse=True)
async def _no_daemon_outlives_its_test():
    yield
    await kill_leftovers()


LEASE = 2.0  # seconds: short, so an expiry is waited on briefly, long enough for a loaded machine's heartbeat
PREFIX = "sbtest:"


def hub_config(url: str, instance: str, **hub: Any) -> dict[str, Any]:
    """One instance: a recording platform, the hub, the shared Redis store."""
    return {
        "bridge": {"store": url, "store_prefix": PREFIX, "instance": instance, "instance_lease": LEASE},
        "platforms": {"rec": {"plugin": RECORDING}},
        "backends": {"hub": {"plugin": "hub", "interest_fallback": 30.0, "repair_cooldown": 0.0, **hub}},
    }


@contextlib.asynccontextmanager
async def instances(url: str, *names: str, **hub: Any):
    """Started Bridges, one per name, sharing the Redis at `url` (each its own connections and state)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Bridge(config(hub_config(url, name, **hub)))) for name in names]
