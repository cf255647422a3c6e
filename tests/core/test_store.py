"""The SQLite store: round trips, and refusing files it does not own without touching them."""

import sqlite3

import pytest

from bridge.events import Room
from bridge.store import SessionRecord, SQLiteStore, StoreError


async def test_round_trip_and_kv(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    rec = SessionRecord(Room("discord", "123"), "chatting", "omegle", "handle-1", {"mode": "random"})
    await store.save_session(rec)
    await store.set("platform:discord", "last:123", "999")
    await store.close()
    store = SQLiteStore(tmp_path / "s.db")
    [got] = await store.sessions()
    assert (got.room, got.state, got.backend, got.handle, got.start) == (Room("discord", "123"), "chatting", "omegle", "handle-1", {"mode": "random"})
    assert await store.get("platform:discord", "last:123") == "999"
    await store.set("platform:discord", "last:123", None)
    assert await store.get("platform:discord", "last:123") is None
    await store.delete_session(Room("discord", "123"))
    assert await store.sessions() == []


def test_corrupt_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "state.sqlite3"
    garbage = b"this is not sqlite at all\x00" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match="left untouched"):
        SQLiteStore(path)
    assert path.read_bytes() == garbage


def test_foreign_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another program"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteStore(blocker / "sub" / "s.db")
