"""Issue 11 item 1: in the hub a reported pair is never matched again, also after a restart on the same state file."""

from bridge.events import Connected, Disconnected, Message, Report, Start, Waiting
from bridge.store import SQLiteStore
from tests.helpers import running

HUB = {"backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}}}


async def test_a_reported_pair_is_never_matched_again_after_a_restart(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(path)
    async with running(HUB, store=store) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        rec.send("a", Report())
        await rec.wait_for("a", Disconnected)
        await rec.wait_for("b", Disconnected)
    await store.close()

    store = SQLiteStore(path)
    async with running(HUB, store=store) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        rec.send("b", Start())
        await rec.wait_for("b", Waiting)  # b arrived while a waited; had they matched, both would be connected now
        rec.send("c", Start())
        rec.send("d", Start())
        for room in "abcd":
            await rec.wait_for(room, Connected)
        # Who talks to whom: unique tokens, each must reach exactly one other room.
        for room in "abcd":
            rec.send(room, Message(f"token-{room}"))
        reached = {}
        for room in "abcd":
            # every room receives exactly one token: its partner's
            got = await rec.wait_for(room, lambda e: isinstance(e, Message) and e.text.startswith("token-"))
            reached[got.text.removeprefix("token-")] = room
        assert reached["a"] in "cd" and reached["b"] in "cd", reached
        assert reached[reached["a"]] == "a" and reached[reached["b"]] == "b"
        assert all(len(rec.events(room, Message)) == 1 for room in "abcd")
    await store.close()
