"""Thread persistence: a user's message rewrites its thread's record, the thread lists only when threads come and go."""

from __future__ import annotations

import json

import pytest

from bridge.store import MemoryStore
from plugins.discord.shards import Shards
from plugins.discord.threads import ThreadInfo, Threads


class CountingState:
    """A plugin state over a real MemoryStore that records every key written."""

    def __init__(self) -> None:
        self.inner = MemoryStore().state_for("platform:dc")
        self.written: list[str] = []

    async def get(self, key: str) -> str | None:
        return await self.inner.get(key)

    async def set(self, key: str, value: str | None) -> None:
        self.written.append(key)
        await self.inner.set(key, value)


async def test_messages_write_the_record_only_and_a_reload_finds_every_thread() -> None:
    state = CountingState()
    threads = Threads(state, shards=Shards(2, (0, 1)))  # type: ignore[arg-type]
    infos = [ThreadInfo(id=(n << 22) + 7, owner=100 + n, guild=n << 22, parent=1) for n in range(4)]
    for info in infos:
        threads.add(info)
        threads.persist(info)
    await threads.write_dirty()
    assert sorted(k for k in state.written if k.startswith("threads")) == ["threads:0/2", "threads:1/2"]

    state.written.clear()
    for n in range(10):  # the owner's messages: last_seen moves on
        infos[n % 4].last_seen = 1000 + n
        threads.persist(infos[n % 4])
        await threads.write_dirty()
    assert state.written == [f"thread:{infos[n % 4].id}" for n in range(10)]

    threads.forget(infos[1])  # a thread's chat is over: the lists change (and are written once)
    await threads.write_dirty()
    assert sorted(k for k in state.written[10:] if k.startswith("threads")) == ["threads:0/2", "threads:1/2"]
    lists = [json.loads(await state.get(key) or "[]") for key in ("threads:0/2", "threads:1/2")]
    assert sorted(lists[0] + lists[1]) == sorted(i.id for i in infos if i is not infos[1])

    again = Threads(state, shards=Shards(2, (0, 1)))  # type: ignore[arg-type]
    await again.load()
    assert {tid: again.get(tid).last_seen for tid in again} == {
        infos[0].id: 1008, infos[2].id: 1006, infos[3].id: 1007,  # type: ignore[union-attr]
    }


async def test_a_failed_list_write_is_retried_at_the_next_flush() -> None:
    state = CountingState()
    threads = Threads(state)  # type: ignore[arg-type]
    info = ThreadInfo(id=5, owner=6, guild=7, parent=8)
    threads.add(info)
    threads.persist(info)
    failing = state.set

    async def refuse(key: str, value: str | None) -> None:
        if key == "threads":
            raise OSError("disk full")
        await failing(key, value)

    state.set = refuse  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await threads.write_dirty()
    state.set = failing  # type: ignore[method-assign]
    info.last_seen = 9
    threads.persist(info)
    await threads.write_dirty()
    assert json.loads(await state.get("threads") or "[]") == [5]
