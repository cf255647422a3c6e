"""Long uptime on a real Synapse (9.15): churning thread sessions leaves bounded room state and a bounded state store."""

from __future__ import annotations

import json

from bridge.store import MemoryStore
from tests.helpers import running

from .conftest import bridge_config, notice_with

CHURN = 40
LIMIT = 16


def in_thread(root: str, text: str):
    return lambda c: (c.get("m.relates_to") or {}).get("event_id") == root and text in c.get("body", "")


async def test_churned_thread_sessions_leave_bounded_state(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    store = MemoryStore()
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], mode="thread", remember_rooms=LIMIT)
    async with running(cfg, store=store) as b:
        mx = b.platforms["mx"]
        rid = await alice.create_room([me, bob.user_id])
        await bob.wait_for(lambda: rid in bob.invites)
        await bob.client.join(rid)
        await alice.wait_message(rid, me, notice_with("!stranger start"))
        await alice.wait_member(rid, bob.user_id, "join")
        roots = []
        for n in range(CHURN):  # each start opens a thread session; each stop ends it
            root = await alice.send(rid, f"!stranger start topic{n}")
            roots.append(root)
            await alice.wait_message(rid, me, in_thread(root, "Looking for someone"))
            thread = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}
            await alice.send(rid, {"msgtype": "m.text", "body": "!stranger stop", "m.relates_to": thread})
            await alice.wait_message(rid, me, in_thread(root, "You have disconnected"))
        await mx.flush()
        rooms = mx.rooms
        assert rooms.active == set()
        for name in ("threads", "thread_rooms", "gone", "encrypted", "plaintext", "members", "last_thread", "last_start"):
            assert len(getattr(rooms, name)) <= LIMIT, name
        assert len(rooms.last_start) == LIMIT and len(rooms.threads) == LIMIT  # the newest ones, kept
        assert len(mx.sync.seen) <= 2 * mx.sync.seen_keep
        # The store holds fixed keys of bounded size, whatever the churn.
        state = store.state_for("platform:mx")
        sync = json.loads(await state.get("sync"))
        assert len(sync["seen"]) <= mx.sync.seen_keep
        assert set(sync) == {"since", "seen"}
        assert json.loads(await state.get("txn")).keys() == {"prefix", "reserved"}
        kept = {key: value for (space, key), value in store._kv.items() if space == "platform:mx"}
        assert set(kept) == {"sync", "txn"} and sum(map(len, kept.values())) < 64 * 1024
        assert not [r for r in await store.sessions() if r.room.platform == "mx"]  # ended sessions are not kept
        # Meaning kept: "next" in the newest ended thread repeats its start there; in one that was
        # forgotten long ago the bot says how to open a new thread instead.
        newest = {"rel_type": "m.thread", "event_id": roots[-1], "is_falling_back": True}
        await alice.send(rid, {"msgtype": "m.text", "body": "!stranger next", "m.relates_to": newest})
        await alice.wait_for(
            lambda: len([e for e in alice.messages(rid, me) if in_thread(roots[-1], "Looking for someone")(e["content"])]) == 2
        )
        oldest = {"rel_type": "m.thread", "event_id": roots[0], "is_falling_back": True}
        await alice.send(rid, {"msgtype": "m.text", "body": "!stranger next", "m.relates_to": oldest})
        await alice.wait_message(rid, me, in_thread(roots[0], "open a chat in a new thread"))
