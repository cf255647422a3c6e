"""A bridge with the web platform running in a thread of its own, for synchronous clients (hypothesis)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from tests.helpers import running


@contextlib.contextmanager
def threaded_bridge(data: dict[str, Any]) -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    """(bridge, its loop) while the bridge runs in another thread; stopped on exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with running(data) as bridge:
                holder["bridge"] = bridge
                ready.set()
                await stop.wait()
        finally:
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30) and "bridge" in holder, "the bridge did not start"
    try:
        yield holder["bridge"], loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
