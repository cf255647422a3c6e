"""A separate process holding an instance lease: `python -m tests.store.leaseholder URL NAME LEASE ROOMS...`.

It opens the Redis store under NAME, saves one chatting session per room (`id`: an omegle session
with handle "handle-<id>" on platform web; `platform:id=handle`: that room with that handle), prints
"ready" and runs (heartbeat and watcher included) until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

from bridge.events import Room
from bridge.store import SessionRecord, open_store, parse_store_url

__all__ = ["main"]


async def main(url: str, name: str, lease: float, rooms: list[str]) -> None:
    store = await open_store(parse_store_url(url), prefix="sbtest:", instance=name, lease=lease, environ={})
    for spec in rooms:
        room, _, handle = spec.partition("=")
        platform, _, room_id = room.rpartition(":")
        record = SessionRecord(Room(platform or "web", room_id), "chatting", "omegle", handle or f"handle-{room_id}", {"mode": "random"})
        await store.save_session(record)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]))
