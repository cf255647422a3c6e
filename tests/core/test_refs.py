"""The reference map on its own: references, bounds, ids, snippets, its encoding, and its place in the store."""

import sqlite3

import pytest

from bridge.events import Room
from bridge.refs import MAX_ID, PENDING, RefMap, snippet
from bridge.store import SessionRecord, SQLiteStore


def test_references_are_per_chat_and_never_collide_between_partners():
    a, b = RefMap(), RefMap()
    refs_a = {a.add_mine(f"a{n}", "x") for n in range(100)}
    refs_b = {b.add_mine(f"b{n}", "x") for n in range(100)}
    assert len(refs_a) == len(refs_b) == 100 and not refs_a & refs_b
    assert RefMap().prefix != RefMap().prefix  # a new chat, a new prefix


def test_each_side_keeps_its_newest_entries_and_forgets_their_ids():
    refs = RefMap(bound=8)
    mine = [refs.add_mine(f"p{n}", f"m{n}") for n in range(20)]
    theirs = [refs.add_theirs(f"s.{n}", f"t{n}") for n in range(20)]
    for ref, n in zip(theirs, range(20)):
        refs.posted(ref, f"q{n}")
    assert list(refs.mine) == mine[-8:] and list(refs.theirs) == theirs[-8:]
    assert refs.by_platform("p11") is None and refs.by_platform("p12")[0] == mine[12]
    assert refs.by_platform("q11") is None and refs.by_platform("q19")[0] == theirs[19]
    assert len(refs.by_id) == 16


def test_posted_only_once_and_only_for_known_lines():
    refs = RefMap()
    ref = refs.add_theirs("x.1", "hello")
    assert refs.posted("unknown", "p1") is None
    assert refs.posted(ref, "p1").id == "p1"
    assert refs.posted(ref, "p2") is None  # a line is posted once
    assert refs.posted(refs.add_theirs("x.2", "long id"), "i" * (MAX_ID + 1)) is None
    assert refs.by_platform("p1") == (ref, refs.entry(ref, False), False)


def test_a_reused_platform_id_points_at_the_newest_message_only():
    refs = RefMap()
    first = refs.add_mine("same", "one")
    second = refs.add_mine("same", "two")
    assert refs.by_platform("same")[0] == second and refs.entry(first, True).id is None


def test_a_reference_from_the_other_side_that_collides_gets_a_new_one():
    refs = RefMap()
    mine = refs.add_mine("p", "x")
    assert refs.add_theirs(mine, "spoof") != mine  # a stranger cannot take over the user's reference


def test_pending_is_bounded():
    refs = RefMap()
    entry = refs.entry(refs.add_theirs("r.1", "x"), False)
    assert all(entry.hold(n) for n in range(PENDING))
    assert entry.hold("one more") is False and len(entry.pending) == PENDING


def test_snippets_are_short_clean_and_one_line():
    assert snippet("a\u202e\nb   c") == "a b c"
    assert len(snippet("x" * 500)) == 80


def test_encoding_round_trip_and_refusal():
    refs = RefMap(bound=8)
    mine = refs.add_mine("p1", "hello")
    theirs = refs.add_theirs("s.1", "there")
    refs.posted(theirs, "q1")
    refs.entry(mine, True).edits = 3
    back = RefMap.decode(refs.encode(), bound=8)
    assert back.prefix == refs.prefix and back.counter == refs.counter
    assert back.by_platform("p1")[0] == mine and back.by_platform("q1")[0] == theirs
    assert back.entry(mine, True).edits == 3 and back.entry(theirs, False).quote() == "there"
    assert back.new_ref() not in (mine, theirs)  # the counter goes on: no reference is handed out twice
    for bad in ("", "[]", '{"p": "x"}', '{"p":"x","n":0,"m":[[1,2,3,4,5,6]],"t":[]}'):
        with pytest.raises(ValueError):
            RefMap.decode(bad)


async def test_sqlite_keeps_the_map_with_the_record_and_migrates_old_files(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.close()
    db = sqlite3.connect(path)  # a file from before the rich relay: no refs column
    db.executescript("CREATE TABLE s2 AS SELECT platform, room, state, backend, handle, start, created, updated FROM sessions;"
                     "DROP TABLE sessions; ALTER TABLE s2 RENAME TO sessions;")  # fmt: skip
    db.execute("INSERT INTO sessions VALUES ('rec','old','chatting','omegle','h','{}',1,1)")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    [old] = await store.sessions()
    assert old.room == Room("rec", "old") and old.refs is None
    refs = RefMap()
    refs.add_mine("p1", "hi")
    await store.save_session(SessionRecord(Room("rec", "new"), "chatting", "omegle", "h", {}, refs=refs.encode()))
    await store.close()
    store = SQLiteStore(path)
    got = {r.room.id: r.refs for r in await store.sessions()}
    assert got["old"] is None and RefMap.decode(got["new"]).by_platform("p1") is not None
    await store.close()
