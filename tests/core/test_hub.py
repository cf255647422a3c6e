"""The embedded hub, end to end through the router, in every mode."""

import asyncio

from bridge.events import Connected, Disconnected, Message, Mode, Reason, Report, Start, StoppedTyping, Typing, Waiting
from tests.helpers import bare, running


def hub(**cfg):
    return {"backends": {"hub": {"plugin": "hub", **cfg}}}


async def test_random_pair_relay_typing_and_stop_both_ways():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        rec.send("b", Start())
        assert await rec.wait_for("a", Connected) == Connected()
        await rec.wait_for("b", Connected)
        rec.send("a", Typing())
        await rec.wait_for("b", Typing)
        rec.send("a", Message("hello b"))
        assert (await rec.wait_for("b", Message)).text == "hello b"
        assert StoppedTyping() in rec.events("b")  # synthesised before the message
        rec.send("b", Message("hello a"))
        assert (await rec.wait_for("a", Message)).text == "hello a"
        rec.send("b", Disconnected())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.STRANGER
        assert (await rec.wait_for("b", Disconnected)).reason == Reason.USER


async def test_interests_are_matched_and_reported():
    async with running(hub(interest_fallback=30)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(interests=("music", "Cats")))
        rec.send("b", Start(interests=("dogs",)))
        rec.send("c", Start(interests=("cats", "chess")))
        assert (await rec.wait_for("a", Connected)).common_interests == ("cats",)
        assert (await rec.wait_for("c", Connected)).common_interests == ("cats",)
        assert b.backends["hub"].pool.waiting == 1  # b, still waiting (pairing happens on arrival)
        rec.send("d", Start(interests=("dogs",)))
        assert (await rec.wait_for("b", Connected)).common_interests == ("dogs",)
        assert len(rec.events("b", Connected)) == 1


async def test_interests_fall_back_to_random_unless_strict():
    async with running(hub(interest_fallback=0.1)) as b:
        rec = b.platforms["rec"]
        rec.send("s", Start(interests=("opera",), strict_interests=True))
        await rec.wait_for("s", Waiting)
        rec.send("a", Start(interests=("stamps",)))  # after s: a non-strict s would fall back first
        await rec.wait_for("a", Waiting)
        rec.send("b", Start())
        connected = await rec.wait_for("a", Connected)  # a fell back to the random b
        assert connected.common_interests == ()
        await rec.wait_for("b", Connected)
        assert b.backends["hub"].pool.waiting == 1  # s: strict, never a random stranger
        assert rec.events("s", Connected) == []


async def test_language_pairs_only_the_same_language():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        rec.send("en", Start(language="en"))
        rec.send("de", Start(language="de"))
        await rec.wait_for("en", Waiting)
        await rec.wait_for("de", Waiting)
        assert b.backends["hub"].pool.waiting == 2  # not paired across languages
        rec.send("de2", Start(language="de"))
        await rec.wait_for("de", Connected)
        await rec.wait_for("de2", Connected)
        assert b.backends["hub"].pool.waiting == 1  # en still waits
        assert rec.events("en", Connected) == []


async def test_spy_ask_and_answer():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        rec.send("x", Start(mode=Mode.ANSWER))
        rec.send("spy", Start(mode=Mode.ASK, question="Is a hot dog a sandwich?"))
        await rec.wait_for("spy", Waiting)
        await rec.wait_for("x", Waiting)
        assert b.backends["hub"].pool.waiting == 2  # the spy needs two answerers
        assert rec.events("spy", Connected) == []
        rec.send("y", Start(answer_questions=True))
        spy = await rec.wait_for("spy", Connected)
        assert spy.strangers == ("Stranger 1", "Stranger 2") and spy.question == "Is a hot dog a sandwich?"
        assert (await rec.wait_for("x", Connected)).question == "Is a hot dog a sandwich?"
        rec.send("x", Message("yes"))
        rec.send("y", Message("no"))
        assert bare(await rec.wait_for("y", Message)) == Message("yes")
        seen = await rec.wait_count("spy", Message, 2)
        assert {m.stranger for m in seen} == {"Stranger 1", "Stranger 2"}
        rec.send("spy", Message("psst"))
        await rec.wait_for("spy", lambda e: getattr(e, "text", "").startswith("You're the spy"))  # not sent
        rec.send("x", Message("after psst"))
        await rec.wait_for("y", lambda e: bare(e) == Message("after psst"))
        assert Message("psst") not in bare(rec.events("x") + rec.events("y"))
        rec.send("x", Disconnected())
        end = await rec.wait_for("spy", Disconnected)
        assert end.final and end.stranger in ("Stranger 1", "Stranger 2")
        assert (await rec.wait_for("y", Disconnected)).reason == Reason.STRANGER


async def test_spy_leaving_does_not_end_the_discussion():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        rec.send("spy", Start(mode=Mode.ASK, question="q?"))
        rec.send("x", Start(mode=Mode.ANSWER))
        rec.send("y", Start(mode=Mode.ANSWER))
        await rec.wait_for("y", Connected)
        rec.send("spy", Disconnected())
        await rec.wait_for("spy", Disconnected)
        rec.send("x", Message("still talking"))
        assert (await rec.wait_for("y", Message)).text == "still talking"
        assert rec.events("x", Disconnected) == []


async def test_group_of_three_lives_while_two_remain():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        for room in "abc":
            rec.send(room, Start(mode=Mode.GROUP))
        for room in "abc":
            assert (await rec.wait_for(room, Connected)).strangers == ("Stranger 1", "Stranger 2")
        rec.send("a", Message("hi all"))
        got_b, got_c = await rec.wait_for("b", Message), await rec.wait_for("c", Message)
        assert got_b.text == got_c.text == "hi all" and got_b.stranger and got_c.stranger
        rec.send("b", Disconnected())
        left = await rec.wait_for("a", Disconnected)
        assert left.final is False and left.stranger
        rec.send("c", Message("two left"))
        assert (await rec.wait_for("a", Message)).text == "two left"
        rec.send("c", Disconnected())
        await rec.wait_count("a", Disconnected, 2)
        assert rec.events("a", Disconnected)[-1].final is True


async def test_just_parted_are_not_repaired_at_once_and_reported_never():
    async with running(hub(repair_cooldown=60)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        rec.send("a", Start())  # next
        await rec.wait_count("a", Waiting, 2)
        rec.send("b", Start())
        await rec.wait_count("b", Waiting, 2)
        assert b.backends["hub"].pool.waiting == 2  # not re-paired with each other
        assert len(rec.events("a", Connected)) == 1
        rec.send("c", Start())
        await rec.wait_for("c", Connected)

    async with running(hub(repair_cooldown=0)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        rec.send("a", Report())
        await rec.wait_for("a", Disconnected)
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_count("a", Waiting, 2)
        await rec.wait_count("b", Waiting, 2)
        assert b.backends["hub"].pool.waiting == 2  # blocked for good
        assert len(rec.events("a", Connected)) == 1
        rec.send("c", Start())
        rec.send("d", Start())
        await rec.wait_count("a", Connected, 2)
        await rec.wait_count("b", Connected, 2)  # each with c or d, never with each other
        assert len(rec.events("c", Connected)) == len(rec.events("d", Connected)) == 1


async def test_report_after_the_chat_ended_still_blocks():
    async with running(hub(repair_cooldown=0)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        rec.send("b", Disconnected())
        await rec.wait_for("a", Disconnected)
        rec.send("a", Report())
        await rec.wait_for("a", lambda e: getattr(e, "text", "").startswith("You reported"))
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_count("a", Waiting, 2)
        await rec.wait_count("b", Waiting, 2)
        assert b.backends["hub"].pool.waiting == 2  # blocked, though the report came after the end
        assert len(rec.events("a", Connected)) == 1


async def test_the_same_person_in_two_rooms_is_not_paired_with_themselves():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(user="same-person"))
        rec.send("b", Start(user="same-person"))
        await rec.wait_for("a", Waiting)
        await rec.wait_for("b", Waiting)
        assert b.backends["hub"].pool.waiting == 2
        rec.send("c", Start(user="someone else"))
        await rec.wait_for("c", Connected)  # c meets one of them: they were free, not paired together
        assert len(rec.events("a", Connected)) + len(rec.events("b", Connected)) == 1


async def test_a_flood_into_a_slow_room_keeps_every_message_in_order_within_the_inbox_bound():
    # Hub messages go straight into the partner's inbox while it has room (no hop through the
    # chat's task); once it is full they wait in the chat, in order, and the pump feeds them in.
    async with running(hub(), inbox_size=10, user_rate=1e6, user_burst=10**6, stranger_rate=1e6, stranger_burst=10**6) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        await rec.wait_for("b", Connected)
        sender, receiver = b.router.sessions[rec.room("a")], b.router.sessions[rec.room("b")]
        queue = receiver.chat.queue
        rec.open.clear()  # b's room shows nothing for now: its session stops at its first delivery
        deepest = 0
        for n in range(60):
            assert rec.send("a", Typing()) and rec.send("a", Message(f"m{n}"))
            async with asyncio.timeout(5):
                while len(sender.inbox):  # a's session handed both to the hub
                    await asyncio.sleep(0)
            assert len(receiver.inbox) <= 2 * 10 + 1  # ten messages, at most one typing state before each and after
            deepest = max(deepest, len(queue))
        assert deepest >= 45  # the rest waited in the chat, not in the bounded inbox
        rec.open.set()
        for n in range(60, 200):  # more while the backlog drains: each one after every earlier one
            rec.send("a", Message(f"m{n}"))
            async with asyncio.timeout(5):
                while len(sender.inbox):
                    await asyncio.sleep(0)
        await rec.wait_for("b", lambda e: bare(e) == Message("m199"))
        assert [e.text for e in rec.events("b", Message)] == [f"m{n}" for n in range(200)]
        assert len(queue) == 0 and len(receiver.inbox) == 0


async def test_an_inbox_offer_never_overtakes_a_waiting_put():
    from bridge.inbox import Inbox

    inbox: Inbox[str] = Inbox(2)
    assert inbox.offer("a") and inbox.offer("b")
    assert not inbox.offer("c") and len(inbox) == 2  # full: refused, nothing queued
    waiting = asyncio.ensure_future(inbox.put("c"))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await inbox.get() == "a"  # room for one: it is the waiting put's
    assert not inbox.offer("d") and not inbox.offer_state("typing", lambda item: True)
    await waiting
    assert [await inbox.get(), await inbox.get()] == ["b", "c"]
    assert inbox.offer("d") and inbox.offer_state("typing", lambda item: True)
    assert [await inbox.get(), await inbox.get()] == ["d", "typing"]
