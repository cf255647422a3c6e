"""Hub backends in scale-out mode without a daemon around them: one Redis store and hub per instance name."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bridge.store import open_store, parse_store_url
from plugins.hub.backend import HubBackend
from plugins.hub.config import HubConfig

__all__ = ["shared_hubs"]


@contextlib.asynccontextmanager
async def shared_hubs(url: str, *names: str, prefix: str, lease: float, chats: list | None = None, **hub: Any) -> AsyncIterator[list[HubBackend]]:
    """Started hubs sharing the Redis at `url`; on exit every chat in `chats` is closed, then hubs and stores."""
    stores, hubs = [], []
    try:
        for name in names:
            store = await open_store(parse_store_url(url), prefix=prefix, instance=name, lease=lease, environ={})
            stores.append(store)
            backend = HubBackend("hub", HubConfig(plugin="hub", **hub))
            backend.scale_out(store)
            await backend.start()
            hubs.append(backend)
        yield hubs
    finally:
        for chat in chats or ():
            await chat.aclose()
        for backend in hubs:
            await backend.stop()
        for store in stores:
            await store.close()
