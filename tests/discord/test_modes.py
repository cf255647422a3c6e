"""Group chats of three, answering a spy's question, and typing in both directions (timeouts, pacing)."""

from __future__ import annotations

import asyncio
import time

from bridge.events import Connected, Disconnected, Message, Mode, ServerNotice, Start, StoppedTyping, Typing
from .guarded import GuardedDiscord
from tests.helpers import running

from .conftest import bridge, bridge_config
from .util import notices, open_chat, paired_with_rec, stranger_lines, typing_over, until, wait_line, wait_notice

ZW = "\u200b"
TYPING = 0.3  # a shortened typing period, so a test can watch several refreshes (the rule is the same at 8 s)


def typing_calls(server, tid: int) -> list:
    return server.writes("POST", rf"^/channels/{tid}/typing$")


def locked(server, tid: int) -> bool:
    meta = server.channels[tid]["thread_metadata"]
    return meta["archived"] and meta["locked"]


async def test_group_of_three_two_threads_and_a_room(server, monkeypatch):
    monkeypatch.setattr(GuardedDiscord, "options", {"typing_every": TYPING})  # typing refreshes fast, so a stuck indicator shows
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, _ = await open_chat(server, alice, mode="group")
        tb, _ = await open_chat(server, bob, cid=server.text_channels[1], mode="group")
        rec.send("g", Start(mode=Mode.GROUP))
        connected = await rec.wait_for("g", Connected)
        assert connected.strangers == ("Stranger 1", "Stranger 2")
        for tid in (ta, tb):
            await wait_notice(server, tid, "You're now chatting with 2 strangers")

        # every member's words reach both others, under one distinct webhook name per speaker
        rec.send("g", Message("hi from the room"))
        await server.user_message(tb, bob, "hi from bob")
        await server.user_message(ta, alice, "hi from alice")
        room_in_a = await wait_line(server, ta, "hi from the room")
        bob_in_a = await wait_line(server, ta, "hi from bob")
        room_in_b = await wait_line(server, tb, "hi from the room")
        alice_in_b = await wait_line(server, tb, "hi from alice")
        assert {room_in_a[0], bob_in_a[0]} == {"Stranger 1", "Stranger 2"}
        assert {room_in_b[0], alice_in_b[0]} == {"Stranger 1", "Stranger 2"}
        heard = await rec.wait_count("g", Message, 2)
        assert {m.text for m in heard} == {"hi from bob", "hi from alice"}
        assert {m.stranger for m in heard} == {"Stranger 1", "Stranger 2"}
        bob_label = next(m.stranger for m in heard if m.text == "hi from bob")
        bob_name_in_a = bob_in_a[0]
        room_name_in_a = room_in_a[0]

        # bob types, then leaves: alice is told, her thread stays open and the chat goes on
        await server.typing(tb, bob)
        await rec.wait_for("g", lambda e: isinstance(e, Typing) and e.stranger == bob_label)
        await server.wait_until(lambda: typing_calls(server, ta))
        await server.slash(bob, tb, "stop")
        gone = await rec.wait_for("g", Disconnected)
        assert gone.final is False and gone.stranger == bob_label
        await wait_notice(server, ta, f"{bob_name_in_a} has disconnected.")
        await server.wait_until(lambda: locked(server, tb))  # bob stopped: his own chat ended
        assert not server.channels[ta]["thread_metadata"]["archived"]
        assert not server.channels[ta]["thread_metadata"].get("locked")
        # the typing bob left behind does not stay on alice's thread (no refresh is scheduled)
        await until(lambda: typing_over(b.platforms["dc"], ta))

        rec.send("g", Message("still here"))
        assert await wait_line(server, ta, "still here") == (room_name_in_a, "still here")
        await server.user_message(ta, alice, "me too")
        assert (await rec.wait_for("g", lambda e: isinstance(e, Message) and e.text == "me too")).stranger is not None

        # the second one leaving ends it: alice's thread is archived and locked
        rec.send("g", Disconnected())
        await wait_notice(server, ta, f"{room_name_in_a} has disconnected.")
        await server.wait_until(lambda: locked(server, ta))
        assert not [n for n in notices(server, ta) if "You have disconnected" in n]
        # nothing of either Discord user reached the others but their words
        for tid in (ta, tb):
            assert all("alice" not in c.replace("hi from alice", "") and "bob" not in c.replace("hi from bob", "")
                       for _, c in stranger_lines(server, tid))


async def test_group_kept_open_when_configured(server):
    async with bridge(server, keep_open=True) as b:
        rec = b.platforms["rec"]
        alice = server.add_user("alice")
        ta, _ = await open_chat(server, alice, mode="group")
        rec.send("g1", Start(mode=Mode.GROUP))
        rec.send("g2", Start(mode=Mode.GROUP))
        await wait_notice(server, ta, "You're now chatting with 2 strangers")
        rec.send("g1", Disconnected())
        await wait_notice(server, ta, "has disconnected.")
        rec.send("g2", Message("two left"))
        await wait_line(server, ta, "two left")
        rec.send("g2", Disconnected())
        await wait_notice(server, ta, "has disconnected.", count=2)
        # alice starts again in her thread: an (unwanted) archive call, queued after the last notice,
        # would have come before this next notice
        await server.slash(alice, ta, "start", mode="group")
        await wait_notice(server, ta, "Looking for someone", count=2)
        assert not server.writes("PATCH", rf"^/channels/{ta}$")
        assert not server.channels[ta]["thread_metadata"]["archived"]


async def test_answer_a_spys_question(server):
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, bob = server.add_user("alice"), server.add_user("bob")
        rec.send("spy", Start(mode=Mode.ASK, question="cats or dogs? <@1>"))
        known = {t["id"] for t in server.threads()}
        await server.slash(alice, server.text_channels[0], "answer")
        [ta] = await server.wait_until(lambda: [int(t["id"]) for t in server.threads() if t["id"] not in known])
        tb, _ = await open_chat(server, bob, cid=server.text_channels[1], mode="answer")
        for tid in (ta, tb):
            [text] = await wait_notice(server, tid, "You're now discussing this question")
            assert "cats or dogs? <" + ZW in text and "<@1>" not in text  # a stranger's question: no pill
        connected = await rec.wait_for("spy", Connected)
        assert connected.question == "cats or dogs? <@1>" and len(connected.strangers) == 2

        await server.user_message(ta, alice, "cats, clearly")
        await server.user_message(tb, bob, "dogs, obviously")
        assert await wait_line(server, tb, "cats, clearly") == ("Stranger", "cats, clearly")
        assert await wait_line(server, ta, "dogs, obviously") == ("Stranger", "dogs, obviously")
        heard = await rec.wait_count("spy", Message, 2)
        labels = {m.text: m.stranger for m in heard}
        assert set(labels) == {"cats, clearly", "dogs, obviously"}
        assert set(labels.values()) == {"Stranger 1", "Stranger 2"}

        # the spy's own words never reach the answerers: the spy is told so, and a later message of
        # each answerer reaches the other one without the spy's words coming first
        rec.send("spy", Message("I am watching"))
        await rec.wait_for("spy", lambda e: isinstance(e, ServerNotice) and "You're the spy" in e.text)
        await server.user_message(ta, alice, "marker from alice")
        await server.user_message(tb, bob, "marker from bob")
        await wait_line(server, tb, "marker from alice")
        await wait_line(server, ta, "marker from bob")
        assert not [c for tid in (ta, tb) for _, c in stranger_lines(server, tid) if "watching" in c]

        # bob leaves: alice's answer chat ends (archived) and the spy is told
        await server.slash(bob, tb, "stop")
        await wait_notice(server, ta, "Stranger has disconnected.")
        await server.wait_until(lambda: locked(server, ta))
        await rec.wait_for("spy", Disconnected)


async def test_user_typing_times_out_to_stopped_typing(server):
    async with running(bridge_config(server), typing_timeout=0.3) as b:
        rec = b.platforms["rec"]
        alice, tid = await paired_with_rec(server, b)
        await server.typing(tid, alice)
        await rec.wait_for("w", Typing)
        stopped = await rec.wait_for("w", StoppedTyping)
        shown = rec.events("w")
        assert shown.index(stopped) > shown.index(next(e for e in shown if isinstance(e, Typing)))
        assert not rec.events("w", Message)
        # typing again after the timeout shows typing again; the message itself still goes through
        await server.typing(tid, alice)
        await rec.wait_count("w", Typing, 2)
        await server.user_message(tid, alice, "typed it")
        assert (await rec.wait_for("w", Message)).text == "typed it"


async def test_stranger_typing_refreshed_at_most_once_per_period(server, monkeypatch):
    # The period is shortened so a test can watch several refreshes; the rule is the same at 8 s.
    monkeypatch.setattr(GuardedDiscord, "options", {"typing_every": TYPING})
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        _, tid = await paired_with_rec(server, b)
        rec.send("w", Typing())
        await server.wait_until(lambda: typing_calls(server, tid))
        first = typing_calls(server, tid)[0].at
        for _ in range(30):  # the stranger keeps typing for about 1.5 s
            rec.send("w", Typing())
            await asyncio.sleep(0.05)
        await server.wait_until(lambda: len(typing_calls(server, tid)) >= 3)  # refreshed while typing goes on
        rec.send("w", Message("done"))
        await wait_line(server, tid, "done")
        elapsed = time.perf_counter() - first
        calls = typing_calls(server, tid)
        assert len(calls) <= 1 + elapsed // TYPING + 1
        # after the message the indicator is not refreshed any more: no refresh is scheduled
        await until(lambda: typing_over(b.platforms["dc"], tid))
