"""The session state machine against a scripted backend and a recording platform."""

import asyncio

import pytest

from bridge.events import (
    Connected,
    Disconnected,
    Message,
    Mode,
    Question,
    Reason,
    Report,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.session import State
from tests.core.scripted import SCRIPTED
from tests.helpers import bare, running


def scripted(**backend):
    return {"backends": {"s": {"plugin": SCRIPTED, **backend}}, "bridge": {"default_backend": "s"}}


async def reaches(chat, event, timeout=5.0):
    """Wait until `event` was sent to the stranger (a positive marker: no fixed sleep)."""
    async with asyncio.timeout(timeout):
        while event not in chat.sent:
            await asyncio.sleep(0.005)


async def chatting(bridge, room="a", index=0):
    rec, backend = bridge.platforms["rec"], bridge.backends["s"]
    rec.send(room, Start())
    chat = await backend.next_chat(index)
    chat.stranger(Connected())
    await rec.wait_for(room, Connected)
    return rec, chat


async def test_message_while_idle_or_searching_gets_a_notice():
    async with running(scripted()) as b:
        rec = b.platforms["rec"]
        rec.send("a", Message("hello?"))
        notice = await rec.wait_for("a", ServerNotice)
        assert "not chatting" in notice.text
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        rec.send("a", Message("anyone?"))
        await rec.wait_count("a", ServerNotice, 2)
        assert "Still looking" in rec.events("a", ServerNotice)[1].text
        assert b.backends["s"].chats[0].sent == []


async def test_relay_both_ways_and_stop():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        rec.send("a", Message("hi there"))
        chat.stranger(Message("hello <b>you</b>\u202e"))
        msg = await rec.wait_for("a", Message)
        assert bare(msg) == Message("hello <b>you</b>")  # bidi override stripped, markup left to renderers
        rec.send("a", Disconnected())
        end = await rec.wait_for("a", Disconnected)
        assert end.reason == Reason.USER
        assert chat.sent == [Message("hi there")]
        assert chat.closed == 1
        assert b.router.state_of(rec.room("a")) is State.IDLE


async def test_start_while_chatting_means_next():
    async with running(scripted()) as b:
        rec, first = await chatting(b)
        rec.send("a", Start())
        second = await b.backends["s"].next_chat(1)
        assert first.closed == 1
        first.stranger(Message("late message from the old stranger"))
        second.stranger(Connected(), Message("marker from the new stranger"))
        await rec.wait_count("a", Connected, 2)
        await rec.wait_for("a", Message)
        assert bare(rec.events("a", Message)) == [Message("marker from the new stranger")]  # the left chat's is dropped
        assert rec.events("a", Disconnected) == [Disconnected(reason=Reason.USER)]


async def test_stranger_disconnect_ends_once():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(Disconnected(reason=Reason.STRANGER), None)
        await rec.wait_for("a", Disconnected)
        rec.send("a", Message("after"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text)
        assert rec.events("a", Disconnected) == [Disconnected(reason=Reason.STRANGER)]
        assert chat.sent == []


async def test_backend_exception_ends_with_one_notice():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(RuntimeError("boom"))
        end = await rec.wait_for("a", Disconnected)
        assert end.reason == Reason.ERROR
        rec.send("a", Message("marker"))  # handled after anything the failure still queued
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text)
        assert len(rec.events("a", Disconnected)) == 1


async def test_stream_ending_without_disconnect_is_connection_lost():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(None)
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.ERROR


async def test_connect_failure_ends_search_with_one_notice():
    async with running(scripted(fail_connect=True)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.ERROR
        assert b.router.state_of(rec.room("a")) is State.IDLE


async def test_search_timeout():
    async with running(scripted(), search_timeout=0.2) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.TIMEOUT
        assert b.backends["s"].chats[0].closed == 1


async def test_typing_is_synthesised_and_deduplicated():
    async with running(scripted(), typing_timeout=0.2, stranger_typing_timeout=0.2, typing_interval=0.05) as b:
        rec, chat = await chatting(b)
        for _ in range(5):
            rec.send("a", Typing())
        await reaches(chat, StoppedTyping())  # the user went quiet: the stranger is told
        assert chat.sent == [Typing(), StoppedTyping()]  # five starts, one relayed
        for _ in range(100):
            chat.stranger(Typing())
        await rec.wait_for("a", Typing)
        await rec.wait_for("a", StoppedTyping)  # after the timeout
        chat.stranger(Typing(), Message("done"))
        await rec.wait_for("a", Message)
        shown = [e for e in rec.shown[rec.room("a")] if isinstance(e, (Typing, StoppedTyping, Message))]
        assert bare(shown) == [Typing(), StoppedTyping(), Typing(), StoppedTyping(), Message("done")]


async def test_message_implies_stopped_typing_for_the_user_side():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        rec.send("a", Typing())
        rec.send("a", Message("x"))
        rec.send("a", Typing())
        rec.send("a", Message("end"))
        await reaches(chat, Message("end"))
        assert chat.sent == [Typing(), Message("x"), Typing(), Message("end")]


async def test_spy_asker_only_watches():
    async with running(scripted()) as b:
        rec, backend = b.platforms["rec"], b.backends["s"]
        rec.send("a", Start(mode=Mode.ASK, question="cats or dogs?"))
        chat = await backend.next_chat(0)
        chat.stranger(Connected(question="cats or dogs?", strangers=("Stranger 1", "Stranger 2")))
        await rec.wait_for("a", Connected)
        rec.send("a", Message("I am the spy"))
        notice = await rec.wait_for("a", ServerNotice)
        assert "spy" in notice.text
        assert chat.sent == []
        chat.stranger(Message("cats", "Stranger 1"), Disconnected("Stranger 2", Reason.STRANGER))
        end = await rec.wait_for("a", Disconnected)
        assert end == Disconnected("Stranger 2", Reason.STRANGER, final=True)


async def test_group_partial_leave_keeps_chatting():
    async with running(scripted()) as b:
        rec, backend = b.platforms["rec"], b.backends["s"]
        rec.send("a", Start(mode=Mode.GROUP))
        chat = await backend.next_chat(0)
        chat.stranger(
            Connected(strangers=("Stranger 1", "Stranger 2")), Typing("Stranger 1"), Disconnected("Stranger 1", final=False)
        )
        await rec.wait_for("a", Disconnected)
        kinds = [e for e in rec.shown[rec.room("a")] if isinstance(e, (Typing, StoppedTyping, Disconnected))]
        assert kinds == [Typing("Stranger 1"), StoppedTyping("Stranger 1"), Disconnected("Stranger 1", final=False)]
        rec.send("a", Message("still here"))
        await reaches(chat, Message("still here"))
        assert chat.sent == [Message("still here")]
        chat.stranger(Disconnected("Stranger 2", final=False))  # the last one cannot be partial
        await rec.wait_count("a", Disconnected, 2)
        assert rec.events("a", Disconnected)[-1].final is True
        assert b.router.state_of(rec.room("a")) is State.IDLE


@pytest.mark.parametrize(
    "start, words",
    [
        (Start(interests=tuple(f"i{n}" for n in range(1000))), "Too many interests"),
        (Start(interests=("x" * 65,)), "interest is too long"),
        (Start(mode=Mode.ASK, question="q" * (10 * 1024 * 1024)), "question is too long"),
        (Start(mode=Mode.ASK, question="  "), "needs a question"),
        (Start(language="english!"), "two- or three-letter"),
    ],
)
async def test_bad_starts_are_refused_with_a_notice(start, words):
    async with running(scripted()) as b:
        rec = b.platforms["rec"]
        rec.send("a", start)
        notice = await rec.wait_for("a", ServerNotice)
        assert words in notice.text
        assert b.backends["s"].chats == []


async def test_too_long_message_refused_with_notice():
    async with running(scripted(max_length=100)) as b:
        rec, chat = await chatting(b)
        rec.send("a", Message("y" * 101))
        notice = await rec.wait_for("a", ServerNotice)
        assert "too long" in notice.text and "100" in notice.text
        assert chat.sent == []


async def test_user_flood_is_limited_with_one_notice():
    async with running(scripted(), user_rate=1, user_burst=5) as b:
        rec, chat = await chatting(b)
        for n in range(50):
            rec.send("a", Message(f"m{n}"))
        rec.send("a", Typing())  # a marker the bucket lets through, handled after the flood
        await reaches(chat, Typing())
        assert chat.sent == [Message(f"m{n}") for n in range(5)] + [Typing()]
        notices = [e for e in rec.events("a", ServerNotice) if "too fast" in e.text]
        assert len(notices) == 1


async def test_stranger_flood_is_limited_with_one_notice():
    async with running(scripted(), stranger_rate=1, stranger_burst=10) as b:
        rec, chat = await chatting(b)
        chat.stranger(*[Message(f"s{n}") for n in range(200)], Message("last"))
        chat.stranger(Typing())  # a marker the bucket lets through, handled after the flood
        await rec.wait_for("a", Typing)
        assert bare(rec.events("a", Message)) == [Message(f"s{n}") for n in range(10)]
        assert len([e for e in rec.events("a", ServerNotice) if "too fast" in e.text]) == 1


async def test_report_sends_report_and_ends():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        rec.send("a", Report())
        # the scripted backend keeps nobody apart: the confirmation must not promise it
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.REPORT_RECORDED
        assert chat.sent == [Report()]


async def test_question_and_notices_are_cleaned():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(Question("why\x00?"), ServerNotice("x" * 5000))
        q = await rec.wait_for("a", Question)
        n = await rec.wait_for("a", ServerNotice)
        assert q.text == "why?"
        assert len(n.text) <= 2000


async def test_failing_platform_is_retried_then_gives_up():
    data = scripted()
    data["platforms"] = {"rec": {"plugin": "tests.helpers:RecordingPlatform", "fail_times": 2}}
    async with running(data, deliver_attempts=3) as b:
        rec = b.platforms["rec"]
        rec.send("a", Message("x"))
        await rec.wait_for("a", ServerNotice, timeout=5)  # delivered on the third attempt
        assert b.metrics.counters[("errors", (("kind", "deliver"),))] == 2


async def test_rooms_are_independent():
    async with running(scripted()) as b:
        rec, backend = b.platforms["rec"], b.backends["s"]
        rec.send("a", Start())
        rec.send("b", Start())
        ca, cb = await backend.next_chat(0), await backend.next_chat(1)
        ca.stranger(Connected(), Message("for a"))
        cb.stranger(Connected(), Message("for b"))
        assert (await rec.wait_for("a", Message)).text == "for a"
        assert (await rec.wait_for("b", Message)).text == "for b"
        assert bare(rec.events("a", Message)) == [Message("for a")]


async def test_events_before_connected_imply_connected():
    async with running(scripted()) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        chat = await b.backends["s"].next_chat(0)
        chat.stranger(Message("early bird"))
        await rec.wait_for("a", Message)
        kinds = [type(e).__name__ for e in rec.shown[rec.room("a")]]
        assert kinds == ["Waiting", "Connected", "Message"]


async def test_shutdown_tells_every_room_and_stranger_once():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        rec.send("b", Start())
        chat_b = await b.backends["s"].next_chat(1)
    assert rec.events("a", Disconnected) == [Disconnected(reason=Reason.SHUTDOWN)]
    assert rec.events("b", Disconnected) == [Disconnected(reason=Reason.SHUTDOWN)]
    assert chat.closed == 1 and chat_b.closed == 1


async def test_invisible_only_messages_are_not_relayed_either_way():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(Message("\u200b" * 10), Message("\u3164\u00ad\u2060"), Message("marker"))
        rec.send("a", Message("\u200b\u200c"))
        rec.send("a", Message("user marker"))
        await rec.wait_for("a", Message)
        assert bare(rec.events("a", Message)) == [Message("marker")]  # the marker came after the blanks
        async with asyncio.timeout(5):
            while not chat.sent:
                await asyncio.sleep(0.01)
        assert chat.sent == [Message("user marker")]


async def test_a_long_flood_gets_one_notice_per_direction_per_burst():
    user_notice = "You're sending messages too fast: some were not sent."
    stranger_notice = "The stranger is sending messages too fast: some were not shown."
    # A refill takes 2 s: forty times the pace of the flood below, so a loaded machine that
    # stretches the flood's 20 ms steps does not end the burst early.
    limits = dict(user_rate=1, user_burst=2, stranger_rate=1, stranger_burst=2)

    async def markers(rec, chat, n):
        await asyncio.sleep(2.3)  # quiet for longer than a refill: the burst is over
        rec.send("a", Message(f"user marker {n}"))
        chat.stranger(Message(f"stranger marker {n}"))
        await rec.wait_for("a", lambda e: bare(e) == Message(f"stranger marker {n}"))
        async with asyncio.timeout(5):
            while Message(f"user marker {n}") not in chat.sent:
                await asyncio.sleep(0.01)
        return sorted(e.text for e in rec.events("a", ServerNotice) if "too fast" in e.text)

    async with running(scripted(max_length=100), **limits) as b:
        rec, chat = await chatting(b)
        for n in range(100):  # 2 s at 50 a second each way: some get through between drops
            rec.send("a", Message(f"u{n}"))
            chat.stranger(Message(f"s{n}"))
            await asyncio.sleep(0.02)
        assert await markers(rec, chat, 1) == sorted([user_notice, stranger_notice])
        assert len(chat.sent) > limits["user_burst"] + 1  # messages did pass between drops (and the marker)
        assert len(rec.events("a", Message)) > limits["stranger_burst"] + 1

        for n in range(20):  # a new flood after the quiet period is a new burst: one more each
            rec.send("a", Message(f"again u{n}"))
            chat.stranger(Message(f"again s{n}"))
        assert await markers(rec, chat, 2) == sorted([user_notice, stranger_notice] * 2)


@pytest.mark.parametrize(
    "ending",
    [Disconnected(reason=Reason.ERROR), Disconnected(reason=Reason.REFUSED), RuntimeError("boom"), None],
    ids=["error", "refused", "raises", "stream-ends"],
)
async def test_a_backend_that_fails_with_its_own_notice_is_announced_once(ending):
    from bridge.wording import describe

    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(ServerNotice("The stranger service failed (HTTP 500)."), ending)
        end = await rec.wait_for("a", Disconnected)
        assert end.explained and end.reason in (Reason.ERROR, Reason.REFUSED)
        said = [describe(e) for e in rec.shown[rec.room("a")][2:]]  # after Waiting and Connected
        assert said == ["The stranger service failed (HTTP 500).", "The chat has ended."]
        assert not any("connection to the stranger was lost" in s for s in said)


async def test_a_notice_long_before_a_failure_does_not_hide_the_failure():
    async with running(scripted()) as b:
        rec, chat = await chatting(b)
        chat.stranger(ServerNotice("Another stranger joined the room."))
        await rec.wait_for("a", ServerNotice)
        chat.stranger(Disconnected(reason=Reason.ERROR))
        end = await rec.wait_for("a", Disconnected)
        assert end == Disconnected(reason=Reason.ERROR) and not end.explained


async def test_typing_toggles_never_take_a_messages_place_in_a_full_inbox():
    from bridge.wording import NOT_ALL_DELIVERED

    async with running(scripted(), inbox_size=10, typing_interval=0) as b:
        rec, chat = await chatting(b)
        for n in range(10):  # no await: nothing is handled in between, the inbox fills
            for _ in range(500):
                assert rec.send("a", Typing()) and rec.send("a", StoppedTyping())
            assert rec.send("a", Message(f"m{n}")), f"m{n} was refused"
        session = b.router.sessions[rec.room("a")]
        assert len(session.inbox) <= 21  # ten messages and at most one typing state before each, and after
        refused = [n for n in range(10, 15) if not rec.send("a", Message(f"m{n}"))]
        assert refused == [10, 11, 12, 13, 14]  # now the inbox is full of messages
        notice = await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "Too much at once" in e.text)
        async with asyncio.timeout(5):
            while NOT_ALL_DELIVERED not in [getattr(e, "text", None) for e in chat.sent]:
                await asyncio.sleep(0.01)
        texts = [e.text for e in chat.sent if isinstance(e, Message)]
        assert texts == [f"m{n}" for n in range(10)] + [NOT_ALL_DELIVERED]  # the stranger is told too, after
        assert notice and len([e for e in rec.events("a", ServerNotice) if "Too much" in e.text]) == 1
        assert b.metrics.counters[("messages_dropped", (("reason", "inbox_full"), ("side", "user")))] == 5


async def test_a_hundred_typing_toggles_a_second_with_messages_lose_nothing_and_relay_little():
    async with running(scripted(), typing_interval=0.5, user_burst=1000, stranger_burst=1000) as b:
        rec, chat = await chatting(b)
        sent = []
        for n in range(200):  # 2 s of toggling at 100 a second, each way, and a message every 100 ms
            typing = Typing() if n % 2 == 0 else StoppedTyping()
            rec.send("a", typing)
            chat.stranger(typing)
            if n % 10 == 9:
                sent.append(f"t{n}")
                rec.send("a", Message(f"u{n}"))
                chat.stranger(Message(f"s{n}"))
            await asyncio.sleep(0.01)
        rec.send("a", Message("user end"))
        chat.stranger(Message("stranger end"))
        await rec.wait_for("a", lambda e: bare(e) == Message("stranger end"))
        async with asyncio.timeout(5):
            while Message("user end") not in chat.sent:
                await asyncio.sleep(0.01)
        shown = rec.shown[rec.room("a")]
        assert [e.text for e in shown if isinstance(e, Message)] == [f"s{t[1:]}" for t in sent] + ["stranger end"]
        assert [e.text for e in chat.sent if isinstance(e, Message)] == [f"u{t[1:]}" for t in sent] + ["user end"]
        # at most one start per interval or per message, each followed by at most one stop
        bound = 2 * (len(sent) + 1 + int(2 / 0.5) + 2)
        assert len([e for e in shown if isinstance(e, (Typing, StoppedTyping))]) <= bound
        assert len([e for e in chat.sent if isinstance(e, (Typing, StoppedTyping))]) <= bound
        assert len([e for e in shown if isinstance(e, Typing)]) >= 1  # typing is still shown at all


async def test_a_message_the_room_cannot_show_is_told_to_both_sides_and_counted():
    from bridge.wording import ROOM_NOT_SHOWN, not_delivered
    from tests.core.flaky import FLAKY

    data = scripted()
    data["platforms"] = {"rec": {"plugin": FLAKY}}
    async with running(data, deliver_attempts=2) as b:
        rec, chat = await chatting(b)
        chat.stranger(*(Message(t) for t in ("ok1", "poison1", "poison2", "ok2", "poison3", "last")))
        await rec.wait_for("a", lambda e: bare(e) == Message("last"))
        async with asyncio.timeout(5):
            while len([e for e in chat.sent if "not delivered" in getattr(e, "text", "")]) < 3:
                await asyncio.sleep(0.01)
        shown = [e.text for e in rec.shown[rec.room("a")] if isinstance(e, (Message, ServerNotice))]
        # one room notice per run of failures; every lost message named to the stranger
        assert shown == ["ok1", ROOM_NOT_SHOWN, "ok2", ROOM_NOT_SHOWN, "last"]
        assert chat.sent == [Message(not_delivered(t)) for t in ("poison1", "poison2", "poison3")]
        assert rec.refused_attempts == 3 * 2  # bounded: deliver_attempts each
        labels = (("platform", "rec"), ("reason", "ConnectionResetError"))
        assert b.metrics.counters[("deliver_failures", labels)] == 3
        assert b.metrics.counters[("deliver_retries", labels)] == 3


async def test_the_stranger_is_told_of_dropped_messages_only():
    async with running(scripted(), inbox_size=10) as b:
        rec, chat = await chatting(b)
        for n in range(10):
            assert rec.send("a", Message(f"m{n}"))
        assert not rec.send("a", Disconnected())  # refused: the inbox is full, and it is no message
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "Too much at once" in e.text)
        await reaches(chat, Message("m9"))
        rec.send("a", Message("after"))
        await reaches(chat, Message("after"))
        assert chat.sent == [Message(f"m{n}") for n in range(10)] + [Message("after")]
