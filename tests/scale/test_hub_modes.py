"""Every hub mode across instances sharing one real redis-server: each person on another instance."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Disconnected, Edit, Image, Message, Mode, Reaction, Reason, Report, Retract, Start, Typing, Waiting

from .conftest import LEASE, PREFIX, instances
from .hubs import shared_hubs


async def test_random_pair_across_instances_relays_every_event_kind(redis_server):
    async with instances(redis_server.url, "a", "b") as (a, b):
        ra, rb = a.platforms["rec"], b.platforms["rec"]
        ra.send("x", Start())
        rb.send("y", Start())
        await ra.wait_for("x", Connected)
        await rb.wait_for("y", Connected)
        ra.send("x", Message("hello from a"))
        assert (await rb.wait_for("y", Message)).text == "hello from a"
        rb.send("y", Typing())
        await ra.wait_for("x", Typing)
        rb.send("y", Message("and from b"))
        assert (await ra.wait_for("x", Message)).text == "and from b"
        ra.send("x", Disconnected())
        ended = await rb.wait_for("y", Disconnected)
        assert ended.reason == Reason.STRANGER and ended.final
        assert len(rb.events("y", Disconnected)) == 1


async def test_interests_language_and_fallback_across_instances(redis_server):
    async with instances(redis_server.url, "a", "b", interest_fallback=0.3) as (a, b):
        ra, rb = a.platforms["rec"], b.platforms["rec"]
        ra.send("de", Start(language="de"))
        ra.send("tea", Start(interests=("tea", "jazz")))
        rb.send("en", Start())  # another language than "de"; no interests: waits among randoms
        rb.send("jazz", Start(interests=("jazz",)))
        met = await rb.wait_for("jazz", Connected)
        assert met.common_interests == ("jazz",)
        await ra.wait_for("tea", Connected)
        rb.send("de2", Start(language="de"))
        await ra.wait_for("de", Connected)
        await rb.wait_for("de2", Connected)
        ra.send("golf", Start(interests=("golf",)))  # nobody shares it: after 0.3 s it takes "en"
        assert (await ra.wait_for("golf", Connected)).common_interests == ()
        await rb.wait_for("en", Connected)
        ra.send("golf", Message("fell back"))
        assert (await rb.wait_for("en", Message)).text == "fell back"


async def test_spy_question_and_group_of_three_over_three_instances(redis_server):
    async with instances(redis_server.url, "a", "b", "c") as (a, b, c):
        ra, rb, rc = (i.platforms["rec"] for i in (a, b, c))
        ra.send("spy", Start(mode=Mode.ASK, question="cats or dogs?"))
        rb.send("ans1", Start(mode=Mode.ANSWER))
        rc.send("ans2", Start(mode=Mode.ANSWER))
        spy = await ra.wait_for("spy", Connected)
        assert spy.question == "cats or dogs?" and spy.strangers == ("Stranger 1", "Stranger 2")
        assert (await rb.wait_for("ans1", Connected)).question == "cats or dogs?"
        await rc.wait_for("ans2", Connected)
        rb.send("ans1", Message("cats"))
        assert (await rc.wait_for("ans2", Message)).text == "cats"
        heard = await ra.wait_for("spy", Message)
        assert heard.text == "cats" and heard.stranger in ("Stranger 1", "Stranger 2")
        ra.send("spy", Message("the spy cannot talk"))
        rc.send("ans2", Message("dogs"))
        dogs = await ra.wait_for("spy", lambda e: isinstance(e, Message) and e.text == "dogs")
        assert {dogs.stranger, heard.stranger} == {"Stranger 1", "Stranger 2"}  # one label per answerer
        assert [m.text for m in rb.events("ans1", Message)] == ["dogs"]  # nothing from the spy
        # groups of three
        ra.send("g1", Start(mode=Mode.GROUP))
        rb.send("g2", Start(mode=Mode.GROUP))
        rc.send("g3", Start(mode=Mode.GROUP))
        for rec, room in ((ra, "g1"), (rb, "g2"), (rc, "g3")):
            assert (await rec.wait_for(room, Connected)).strangers == ("Stranger 1", "Stranger 2")
        rc.send("g3", Message("hi all"))
        for rec, room in ((ra, "g1"), (rb, "g2")):
            assert (await rec.wait_for(room, Message)).text == "hi all"
        ra.send("g1", Disconnected())
        for rec, room in ((rb, "g2"), (rc, "g3")):
            left = await rec.wait_for(room, Disconnected)
            assert not left.final  # two remain: the group goes on
        rb.send("g2", Message("still here"))
        assert (await rc.wait_for("g3", lambda e: isinstance(e, Message) and e.text == "still here")).stranger


async def next_event(chat, kinds: tuple[type, ...]):
    async with asyncio.timeout(10):
        async for event in chat.events():
            if isinstance(event, kinds):
                return event


async def test_rich_events_cross_instances_field_for_field(redis_server):
    """At the hub itself (no session in between): what one instance's chat is given, the other's yields."""
    async with shared_hubs(redis_server.url, "a", "b", prefix=PREFIX, lease=LEASE) as hubs:
        x = await hubs[0].connect(Start(user="x", scope="rec"))
        y = await hubs[1].connect(Start(user="y", scope="rec"))
        assert isinstance(await next_event(x, (Connected,)), Connected)
        assert isinstance(await next_event(y, (Connected,)), Connected)
        picture = Image(b"\x89PNG\r\n\x1a\n\x00\xff", "image/png", 3, 2)
        sent = [
            Message("with a picture", ref="r1", reply_to="r0", image=picture),
            Edit("r1", "edited"),
            Reaction("r1", "\N{THUMBS UP SIGN}", add=False),
            Retract("r1"),
            Message("plain"),
        ]
        for event in sent:
            await x.send(event)
        got = [await next_event(y, (Message, Edit, Reaction, Retract)) for _ in sent]
        assert got == sent  # every field, the image's bytes included
        await x.aclose()
        assert (await next_event(y, (Disconnected,))).reason == Reason.STRANGER


async def test_reported_pair_never_meets_again_and_cool_down_holds_across_instances(redis_server):
    async with instances(redis_server.url, "a", "b", repair_cooldown=60.0) as (a, b):
        ra, rb = a.platforms["rec"], b.platforms["rec"]
        ra.send("x", Start(user="alice"))
        rb.send("y", Start(user="bob"))
        await ra.wait_for("x", Connected)
        await rb.wait_for("y", Connected)
        ra.send("x", Report())
        await rb.wait_for("y", Disconnected)
        redis = a.store.redis
        assert await redis.zscore("sbtest:pool:blocked:alice", "bob") is not None
        assert await redis.zscore("sbtest:pool:blocked:bob", "alice") is not None
        async with asyncio.timeout(10):  # the cool-down, too (stored by the leaving side just after it left)
            while await redis.pttl("sbtest:pool:parted:alice\nbob") < 50_000:
                await asyncio.sleep(0.02)
        ra.send("x", Start(user="alice"))
        await ra.wait_count("x", Waiting, 2)
        rb.send("y", Start(user="bob"))
        await rb.wait_count("y", Waiting, 2)
        rb.send("z", Start(user="carol"))
        ra.send("w", Start(user="dave"))
        for rec, room in ((ra, "x"), (rb, "y")):
            await rec.wait_count(room, Connected, 2)
        ra.send("x", Message("from alice"))
        rb.send("y", Message("from bob"))
        got = [(await rb.wait_for("z", Message)).text, (await ra.wait_for("w", Message)).text]
        assert sorted(got) == ["from alice", "from bob"]  # carol and dave met them: alice and bob did not meet
