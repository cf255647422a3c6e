"""The rich relay's limits and races on the real Synapse, platform driven directly: a reaction flood,
an edit after the chat ended, retracting one of several merged messages, long lines, edit caps."""

from __future__ import annotations

import asyncio
import time

from bridge.events import Disconnected, Edit, Message, Posted, Reaction, Retract
from plugins.matrix.relations import EDITS_PER_MESSAGE, REACTION_BURST, REACTION_RATE

from .conftest import notice_with
from .test_rich_platform import chatting, edit_of, platform, reactions, visible


async def test_a_reaction_flood_is_bounded_with_one_notice_per_burst(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        target = await alice.send(rid, "react to me")
        await core.wait(lambda e: isinstance(e, Message) and e.ref == target)
        began = time.monotonic()
        await asyncio.gather(*(
            alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": f"k{n}"}}, "m.reaction")
            for n in range(100)
        ))
        took = time.monotonic() - began
        await alice.send(rid, "marker after the flood")
        await core.wait(lambda e: isinstance(e, Message) and e.text == "marker after the flood")
        handed = core.of(Reaction)
        assert REACTION_BURST <= len(handed) <= REACTION_BURST + REACTION_RATE * took + 1, (len(handed), took)
        assert len({r.emoji for r in handed}) == len(handed)  # each handed in once
        told = await alice.wait_message(rid, me, notice_with("reactions were not sent"))
        assert told["content"]["m.mentions"] == {}


async def test_an_edit_after_the_chat_ended_is_ignored(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot, dm_autostart=False) as (mx, core):  # the marker stays a message
        rid, room = await chatting(mx, core, alice, me)
        first = await alice.send(rid, "before the end")
        await core.wait(lambda e: isinstance(e, Message) and e.ref == first)
        await mx.deliver(room, Disconnected())
        await alice.wait_message(rid, me, notice_with("Stranger has disconnected"))
        await alice.send(rid, edit_of(first, "edited after the end"))
        await alice.client.room_redact(rid, first)
        await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "x"}}, "m.reaction")
        await alice.send(rid, "marker")
        await core.wait(lambda e: isinstance(e, Message) and e.text == "marker")
        assert not core.of(Edit) and not core.of(Retract) and not core.of(Reaction)


async def test_merged_messages_keep_their_own_ids_and_one_can_be_retracted(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        for n in range(8):  # faster than one room takes them: the outbox merges what waits
            await mx.deliver(room, Message(f"m{n}", ref=f"c{n}"))
        posted = {}
        for n in range(8):
            posted[n] = (await core.wait(lambda e, n=n: isinstance(e, Posted) and e.ref == f"c{n}")).id
        events = {p.partition("|")[0] for p in posted.values()}
        assert len(events) < 8, "nothing was merged: the test proves nothing about merged retraction"
        merged = next(n for n, p in posted.items() if "|" in p)
        await mx.deliver(room, Retract(posted[merged]))
        await mx.deliver(room, Edit(posted[merged - 1], f"m{merged - 1} fixed"))
        await mx.deliver(room, Message("after", ref="c9"))
        await alice.wait_message(rid, me, "after")
        want = [f"m{n}" if n != merged - 1 else f"m{n} fixed" for n in range(8) if n != merged]
        lines = "\n".join(visible(alice, rid, me))
        shown = [part.removeprefix("Stranger: ").strip() for part in lines.split("\n")]
        assert [s for s in shown if s.startswith("m")] == want


async def test_a_long_line_edited_keeps_one_event_and_edits_are_capped(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        await mx.deliver(room, Message("long " + "x" * 9000 + " end", ref="c1"))
        posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c1")
        await alice.wait_message(rid, me, " end")
        for n in range(EDITS_PER_MESSAGE + 3):
            await mx.deliver(room, Edit(posted.id, f"short {n}"))
        await mx.deliver(room, Message("marker", ref="c2"))
        await alice.wait_message(rid, me, "marker")
        assert visible(alice, rid, me)[-2:] == [f"Stranger: short {EDITS_PER_MESSAGE - 1}", "Stranger: marker"]
        edits = [e for e in alice.messages(rid, me) if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"]
        assert len(edits) == EDITS_PER_MESSAGE


async def test_one_bot_reaction_per_key_however_many_strangers_hold_it(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        mine = await alice.send(rid, "to a group")
        await core.wait(lambda e: isinstance(e, Message) and e.ref == mine)
        await mx.deliver(room, Reaction(mine, "🔥", stranger="Stranger 1"))
        await mx.deliver(room, Reaction(mine, "🔥", stranger="Stranger 2"))
        await mx.deliver(room, Reaction(mine, "🔥", add=False, stranger="Stranger 1"))
        await mx.deliver(room, Message("marker 1", ref="c1"))
        await alice.wait_message(rid, me, "marker 1")
        assert reactions(alice, rid, me) == {(mine, "🔥")}
        assert len([e for e in alice.timeline[rid] if e.get("type") == "m.reaction"]) == 1
        await mx.deliver(room, Reaction(mine, "🔥", add=False, stranger="Stranger 2"))
        await alice.wait_for(lambda: reactions(alice, rid, me) == set())
        assert mx.stats["fatal"] == 0  # no duplicate annotation was ever sent
