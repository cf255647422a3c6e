"""SQLiteStore runs its calls on one worker thread: a locked file does not stall the event loop; order is kept."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from bridge.events import Room
from bridge.store import SessionRecord, SQLiteStore


async def test_a_write_waiting_on_a_locked_file_leaves_the_event_loop_free(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    loop = asyncio.get_running_loop()
    began = asyncio.Event()
    threads: list[str] = []

    def traced(statement: str) -> None:
        threads.append(threading.current_thread().name)
        if statement.startswith("BEGIN IMMEDIATE"):  # a batch takes the write lock first
            loop.call_soon_threadsafe(began.set)

    store._db.set_trace_callback(traced)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        save = asyncio.ensure_future(store.save_session(SessionRecord(Room("web", "r"), "searching", "hub")))
        async with asyncio.timeout(5):
            await began.wait()  # the batch's BEGIN runs and now waits for the lock ...
        assert not save.done()  # ... so it has not finished, yet this coroutine runs: the loop is free
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    await save
    assert [r.room for r in await store.sessions()] == [Room("web", "r")]
    assert threads and all(name.startswith("sqlite-store") for name in threads)
    await store.close()


async def test_concurrent_calls_take_effect_in_the_order_they_were_made(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    calls = []
    for i in range(300):
        room = Room("web", f"r{i % 7}")
        if i % 3 == 2:
            calls.append(store.delete_session(room))
        else:
            calls.append(store.save_session(SessionRecord(room, "chatting", "hub", f"h{i}", {}, created=float(i))))
        calls.append(store.set("ns", f"k{i % 5}", None if i % 4 == 3 else str(i)))
    await asyncio.gather(*calls)
    expected_rooms: dict[str, str | None] = {}
    expected_kv: dict[str, str | None] = {}
    for i in range(300):
        expected_rooms[f"r{i % 7}"] = None if i % 3 == 2 else f"h{i}"
        expected_kv[f"k{i % 5}"] = None if i % 4 == 3 else str(i)
    got = {r.room.id: r.handle for r in await store.sessions()}
    assert got == {room: handle for room, handle in expected_rooms.items() if handle is not None}
    assert {k: await store.get("ns", k) for k in expected_kv} == expected_kv
    await store.close()
    reopened = SQLiteStore(tmp_path / "s.db")  # close waited for every queued write
    assert {r.room.id: r.handle for r in await reopened.sessions()} == got
    await reopened.close()
