"""The rich relay's text fallback on a real Omegle-protocol chat, and the reference map across a resume."""

from __future__ import annotations

import asyncio
import json

from bridge.events import Connected, Edit, Image, Message, Reaction, Retract, Room, ServerNotice, Start
from bridge.fallback import RULES
from bridge.refs import RefMap
from bridge.store import MemoryStore, SessionRecord
from tests.core.richplatform import RICH
from tests.helpers import running

from .conftest import omegle
from .stranger import Stranger


def rich_omegle(url: str) -> dict:
    return {**omegle(url), "platforms": {"rec": {"plugin": RICH}}}


def got(stranger: Stranger) -> list[str]:
    return [e[1] for e in stranger.events if e[0] == "gotMessage"]


async def test_an_edit_arrives_as_corrected_a_reply_quoted_and_a_reaction_not_at_all(server, http):
    async with running(rich_omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        await s.send("do you like tea?")
        line = await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "do you like tea?")
        assert line.ref is not None  # the core hands out references for a backend that has none
        rec.send("a", Message("yes, green tea", ref="u1"))
        await s.wait_for("gotMessage", "yes, green tea")
        rec.send("a", Edit("u1", "yes, black tea"))
        await s.wait_for("gotMessage", "* corrected: yes, black tea")
        rec.send("a", Reaction(rec.id_of("a", "do you like tea?"), "👍"))
        rec.send("a", Message("and you?", ref="u2", reply_to=rec.id_of("a", "do you like tea?")))
        await s.wait_for("gotMessage", "> do you like tea?\nand you?")
        rec.send("a", Retract("u2"))
        rec.send("a", Message("marker", ref="u3"))
        await s.wait_for("gotMessage", "marker")
        # the reaction became nothing, the deletion nothing for the stranger but a notice here
        assert got(s) == ["yes, green tea", "* corrected: yes, black tea", "> do you like tea?\nand you?", "marker"]
        assert [e.text for e in rec.events("a", ServerNotice)] == [RULES[Retract].notice]
        await s.close()


async def test_a_picture_to_a_text_only_stranger_is_not_sent_and_the_sender_is_told(server, http):
    async with running(rich_omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        picture = Image(b"\x89PNG...", "image/png", 1, 1)
        rec.send("a", Message("", ref="u1", image=picture))
        rec.send("a", Message("look", ref="u2", image=picture))
        await s.wait_for("gotMessage", "look")
        assert got(s) == ["look"]
        assert [e.text for e in rec.events("a", ServerNotice)] == [RULES[Image].notice] * 2
        await s.close()


async def test_the_map_is_saved_with_a_resumable_chat_and_taken_up_after_a_restart(server, http, monkeypatch):
    # The first run: a message with a reference is saved with the session record (SAVE_INTERVAL after the map was made).
    import bridge.rich

    monkeypatch.setattr(bridge.rich, "SAVE_INTERVAL", 0.3)
    store = MemoryStore()
    async with running(rich_omegle(server.url), store=store) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        rec.send("a", Message("saved with the record", ref="u1"))
        await s.wait_for("gotMessage", "saved with the record")
        async with asyncio.timeout(5):
            while not (store._sessions.get(rec.room("a")) and store._sessions[rec.room("a")].refs):
                await asyncio.sleep(0.01)
        refs = RefMap.decode(store._sessions[rec.room("a")].refs)
        assert refs.by_platform("u1") is not None
        await s.close()

    # A process that died with a chat open left its record and map; the next one takes both up.
    ours = await Stranger(http, server.url).start()
    theirs = await Stranger(http, server.url).start()
    await ours.wait_for("connected")
    await ours.close()
    old = RefMap()
    old.add_mine("u7", "what I said before the restart")
    record = SessionRecord(Room("rec", "a"), "chatting", "omegle", json.dumps({"server": server.url, "id": ours.id}),
                           {"mode": "random"}, refs=old.encode())  # fmt: skip
    store = MemoryStore()
    await store.save_session(record)
    async with running(rich_omegle(server.url), store=store) as b:
        rec = b.platforms["rec"]
        rec.send("a", Edit("u7", "what I meant"))
        await theirs.wait_for("gotMessage", "* corrected: what I meant")
    await theirs.close()
