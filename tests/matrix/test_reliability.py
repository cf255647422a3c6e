"""Restarts on a real Synapse: nothing lost, nothing duplicated (tokens sent == tokens delivered, in order)."""

from __future__ import annotations

import asyncio
import re

from bridge.events import Message
from bridge.store import SQLiteStore
from plugins.matrix.sender import Write
from plugins.matrix.render import notice
from tests.helpers import running

from .conftest import bridge_config, notice_with, paired

TOKEN = re.compile(r"\b([su]\d+)\b")


def tokens_in(bodies: list[str], prefix: str) -> list[str]:
    return [t for body in bodies for t in TOKEN.findall(body) if t.startswith(prefix)]


async def test_synapse_killed_and_restarted_mid_session(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        for n in range(1, 4):
            rec.send("r", Message(f"s{n}"))
            await alice.send(rid, f"u{n}")
        await alice.wait_message(rid, me, "s3")
        await alice.send(rid, "u4")  # maybe synced by the bot before the kill, maybe not
        await asyncio.to_thread(synapse.kill)
        for n in range(4, 8):  # the stranger keeps talking while the homeserver is down
            rec.send("r", Message(f"s{n}"))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(synapse.start)
        for n in range(5, 8):
            await alice.send(rid, f"u{n}")
        for n in range(8, 10):
            rec.send("r", Message(f"s{n}"))
        await alice.send(rid, "u8")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "u8", timeout=40)
        await alice.wait_for(lambda: "s9" in tokens_in([e["content"]["body"] for e in alice.messages(rid, me)], "s"), 40)
        # Markers, one per direction: a duplicate (a retried send, a replayed sync) comes before them.
        rec.send("r", Message("s99"))
        await alice.send(rid, "u99")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "u99", timeout=40)
        await alice.wait_for(lambda: "s99" in tokens_in([e["content"]["body"] for e in alice.messages(rid, me)], "s"), 40)
        to_stranger = [m.text for m in rec.events("r", Message)]
        assert to_stranger == [f"u{n}" for n in range(1, 9)] + ["u99"]
        shown = tokens_in([e["content"]["body"] for e in alice.messages(rid, me)[base:]], "s")
        assert shown == [f"s{n}" for n in range(1, 10)] + ["s99"]


async def test_same_transaction_id_creates_one_event(matrix, synapse):
    """A retry after a timeout reuses the entry's txn id: Synapse stores one event."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        mx = b.platforms["mx"]
        rid = await paired(b, alice, me)
        write = Write(content=notice("only once"), txn=await mx.txn.take())
        await mx.sender.write(rid, write)  # raises unless stored
        await mx.sender.write(rid, write)  # the retry after a timeout: the same txn id
        await alice.send(rid, "!stranger help")
        await alice.wait_message(rid, me, notice_with("!stranger help"))
        assert len([e for e in alice.messages(rid, me) if e["content"]["body"] == "only once"]) == 1


async def test_bridge_restart_resumes_sync_without_loss_or_repeat(matrix, synapse, tmp_path):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    path = tmp_path / "state.sqlite3"
    async with running(cfg, store=SQLiteStore(path)):
        rid = await alice.create_room([me])
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.send(rid, "!stranger help")
        await alice.wait_for(lambda: len(alice.messages(rid, me)) == 2)
    # while the bridge is down alice asks for help again: handled once after the restart
    await alice.send(rid, "!stranger help")
    async with running(cfg, store=SQLiteStore(path)):
        await alice.wait_for(lambda: len([e for e in alice.messages(rid, me) if "!stranger help" in e["content"]["body"]]) >= 3)
        await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        # A marker: a replayed command would be answered before this last help.
        await alice.send(rid, "!stranger help")
        await alice.wait_for(lambda: len([e for e in alice.messages(rid, me) if "!stranger help" in e["content"]["body"]]) >= 4)
    helps = [e for e in alice.messages(rid, me) if e["content"]["body"].startswith("I connect this room")]
    assert len(helps) == 4  # join, before the restart, during the downtime, the marker: each exactly once
    assert len([e for e in alice.messages(rid, me) if "Looking for someone" in e["content"]["body"]]) == 1
