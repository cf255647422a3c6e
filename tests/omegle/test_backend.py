"""The omegle backend through the router: a recording-platform user chats with clients of the test server."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bridge.events import (
    Connected,
    Disconnected,
    Message,
    Mode,
    Question,
    Reason,
    Room,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.store import MemoryStore, SessionRecord
from plugins.omegle import protocol
from plugins.omegle.backend import OmegleBackend, OmegleConfig
from tests.failures import told_once
from tests.helpers import bare, running

from .conftest import omegle
from .server import OmegleTestServer
from .stranger import Stranger


async def test_random_chat_both_ways(server, http, caplog):
    caplog.set_level(logging.DEBUG)
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(language="de"))
        await rec.wait_for("a", Waiting)
        s = await Stranger(http, server.url).start(lang="de")
        await rec.wait_for("a", Connected)
        await s.wait_for("connected")
        # stranger → user: typing, message (stoppedTyping synthesised by the core)
        await s.action("/typing")
        await rec.wait_for("a", Typing)
        assert await s.send("hello from omegle <b>") == "win"
        assert (await rec.wait_for("a", Message)).text == "hello from omegle <b>"
        assert StoppedTyping() in rec.events("a")
        # user → stranger: typing, message, stopped typing
        rec.send("a", Typing())
        await s.wait_for("typing")
        rec.send("a", Message("hello from the bridge ✓"))
        await s.wait_for("gotMessage", "hello from the bridge ✓")
        # the stranger leaves
        await s.action("/disconnect")
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.STRANGER
        await s.close()
        # the /start query was python-omegle's, with the user's language
        start = next(params for method, path, params in server.requests if path == "/start" and params.get("lang") == "de"
                     and params.get("randid") != "TESTRAND")
        assert start["firstevents"] == "1" and start["caps"] == "recaptcha2" and len(start["randid"]) == 8
        # the user leaves a second chat: the stranger is told
        rec.send("a", Start(language="de"))
        s2 = await Stranger(http, server.url).start(lang="de")
        await rec.wait_count("a", Connected, 2)
        rec.send("a", Disconnected())
        await s2.wait_for("strangerDisconnected")
        assert rec.events("a", Disconnected)[-1].reason == Reason.USER
        await s2.close()
        ids = list(server.clients)
    assert ids and not any(cid in caplog.text or cid.split(":")[1] in caplog.text for cid in ids)


async def test_common_likes_arrive_with_connected(server, http):
    async with running(omegle(server.url, stop_common_likes_after=0)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(interests=("cats", "Tea")))
        await rec.wait_for("a", Waiting)
        s = await Stranger(http, server.url).start(topics=json.dumps(["tea", "dogs"]))
        assert (await rec.wait_for("a", Connected)).common_interests == ("tea",)
        await s.close()
    topics = [p["topics"] for _, path, p in server.requests if path == "/start" and "caps" in p]
    assert json.loads(topics[0]) == ["cats", "tea"]


async def test_stop_looking_for_common_likes_after_the_wait(server, http):
    async with running(omegle(server.url, stop_common_likes_after=0.2)) as b:
        rec = b.platforms["rec"]
        rec.send("strict", Start(interests=("opera",), strict_interests=True))
        rec.send("a", Start(interests=("stamps",)))
        await rec.wait_for("a", Waiting)
        await rec.wait_for("strict", Waiting)
        s = await Stranger(http, server.url).start()
        connected = await rec.wait_for("a", Connected)
        assert connected.common_interests == ()
        assert server.paths().count("/stoplookingforcommonlikes") == 1  # only the non-strict one asked
        assert rec.events("strict", Connected) == []
        await s.close()


async def test_answer_mode_question_arrives_with_connected(server, http):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(mode=Mode.ANSWER))
        await rec.wait_for("a", Waiting)
        other = await Stranger(http, server.url).start(wantsspy="1")
        spy = await Stranger(http, server.url).start(ask="Cats or dogs?")
        connected = await rec.wait_for("a", Connected)
        assert connected.question == "Cats or dogs?" and connected.strangers == ("Stranger",)
        rec.send("a", Message("cats, clearly"))
        await other.wait_for("gotMessage", "cats, clearly")
        label = (await spy.wait_for("spyMessage"))[1]
        assert label in ("Stranger 1", "Stranger 2")
        await other.send("dogs!")
        assert (await rec.wait_for("a", Message)).text == "dogs!"
        await other.action("/disconnect")
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.STRANGER
        for s in (other, spy):
            await s.close()
    start = [p for _, path, p in server.requests if path == "/start" and "caps" in p][0]
    assert start["wantsspy"] == "1" and "topics" not in start


async def test_ask_mode_labels_both_strangers(server, http):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("spy", Start(mode=Mode.ASK, question="Pineapple on pizza?"))
        await rec.wait_for("spy", Waiting)
        s1 = await Stranger(http, server.url).start(wantsspy="1")
        s2 = await Stranger(http, server.url).start(wantsspy="1")
        connected = await rec.wait_for("spy", Connected)
        assert connected.strangers == ("Stranger 1", "Stranger 2")
        assert connected.question == "Pineapple on pizza?"
        await s1.action("/typing")
        assert await rec.wait_for("spy", Typing) == Typing("Stranger 1")
        await s1.send("yes")
        await s2.send("never")
        assert bare(await rec.wait_for("spy", lambda e: isinstance(e, Message) and e.stranger == "Stranger 2")) == Message(
            "never", "Stranger 2"
        )
        assert Message("yes", "Stranger 1") in bare(rec.events("spy"))
        rec.send("spy", Message("I am the spy"))  # the core refuses: the spy only watches
        await rec.wait_for("spy", ServerNotice)
        await s2.action("/disconnect")
        end = await rec.wait_for("spy", Disconnected)
        assert end.stranger == "Stranger 2" and end.reason == Reason.STRANGER
        for s in (s1, s2):
            await s.close()
    assert not any(p.get("msg") == "I am the spy" for _, _, p in server.requests)
    start = [p for _, path, p in server.requests if path == "/start" and "caps" in p][0]
    assert start["ask"] == "Pineapple on pizza?"


async def test_events_before_connected(http):
    async with OmegleTestServer(poll_window=0.3, firstevents_connected_batch=False) as server:
        async with running(omegle(server.url)) as b:
            rec = b.platforms["rec"]
            rec.send("a", Start())
            await rec.wait_for("a", Waiting)
            s = await Stranger(http, server.url).start()
            assert (await rec.wait_for("a", Message)).text == "early bird"
            shown = bare(rec.events("a"))
            assert len(rec.events("a", Connected)) == 1
            assert shown.index(rec.events("a", Connected)[0]) < shown.index(Message("early bird"))
            await s.close()


async def test_later_question_and_server_messages_and_unknown_events(server, http):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        client = await server.live_client()
        client.push(["identDigests", "x"], ["somethingNew", 1], ["statusInfo", {"count": 1234}], ["connected"])
        await rec.wait_for("a", Connected)
        client.push(["serverMessage", "Be nice <3"], ["question", "A new question?"], ["count", 4321])
        assert (await rec.wait_for("a", ServerNotice)).text == "Be nice <3"
        assert (await rec.wait_for("a", Question)).text == "A new question?"
        assert await b.backends["omegle"].online() == 4321
        client.push(["strangerDisconnected"])
        await rec.wait_for("a", Disconnected)


@pytest.mark.parametrize(
    ("script", "reason", "notice"),
    [
        ([["waiting"], ["recaptchaRequired", "6Lexyz"]], Reason.REFUSED, "captcha"),
        ([["recaptchaRejected", "6Lexyz"]], Reason.REFUSED, "captcha"),
        ([["waiting"], ["antinudeBanned"]], Reason.REFUSED, "banned"),
        ([["error", "Too many connections from your address"]], Reason.ERROR, "Too many connections"),
        ([["connectionDied"]], Reason.ERROR, "lost this chat"),
    ],
)
async def test_refusals_end_the_chat_with_a_notice(server, script, reason, notice):
    server.start_script = script
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        end = await rec.wait_for("a", Disconnected)
        assert end.reason == reason
        assert any(notice in e.text for e in rec.events("a", ServerNotice))
        assert rec.events("a", Connected) == []
        assert len(rec.events("a", Disconnected)) == 1
        # the session is idle again: a new start works once the server pairs normally
        server.start_script = None
        rec.send("a", Start())
        await rec.wait_count("a", Waiting, 2)


async def test_refusal_in_a_later_poll(server):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        (await server.live_client()).push(["recaptchaRequired", "k"])
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.REFUSED
    assert "/disconnect" not in server.paths()  # the id is dead: nothing more to say


@pytest.mark.parametrize("kind", ["500", "reset", "hang", "garbage"])
async def test_poll_faults_end_the_chat_with_a_notice(server, http, kind):
    async with running(omegle(server.url, poll_timeout=0.5, retries=2)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        ours = next(c.id for c in server.clients.values() if c.id != s.id)
        server.inject("/events", kind, times=3, client=ours)
        before = len(rec.events("a"))
        await rec.wait_for("a", Disconnected, timeout=15)
        assert told_once(rec, "a", before, (Reason.ERROR,)) is not None, "the user is told why, once"
        def polls(client: str) -> int:
            return sum(1 for _, path, p in server.requests if path == "/events" and p.get("id") == client)

        ended = polls(ours)
        # Marker: a new chat of the same room polls twice; the ended one must not have polled since.
        rec.send("a", Start())
        async with asyncio.timeout(10):
            while not (new := [c.id for c in server.clients.values() if c.id not in (ours, s.id)]) or polls(new[0]) < 2:
                await asyncio.sleep(0.02)
        assert polls(ours) == ended
        await s.close()


@pytest.mark.parametrize("kind", ["500", "reset", "hang"])
async def test_one_poll_fault_is_retried(server, http, kind):
    async with running(omegle(server.url, poll_timeout=0.5, retries=2)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        ours = next(c.id for c in server.clients.values() if c.id != s.id)
        server.inject("/events", kind, times=1, client=ours)
        await s.send("still here")
        assert (await rec.wait_for("a", Message, timeout=10)).text == "still here"
        assert rec.events("a", Disconnected) == []
        await s.close()


async def test_start_rotates_to_the_next_server(http):
    async with OmegleTestServer() as bad, OmegleTestServer() as good:
        bad.inject("/start", "500", times=10)
        async with running(omegle(bad.url, good.url)) as b:
            rec = b.platforms["rec"]
            rec.send("a", Start())
            await rec.wait_for("a", Waiting)
            s = await Stranger(http, good.url).start()
            await rec.wait_for("a", Connected)
            rec.send("a", Message("via the second server"))
            await s.wait_for("gotMessage", "via the second server")
            await s.close()
        assert bad.paths() == ["/start"]


async def test_no_server_answers(http):
    async with OmegleTestServer() as down:
        url = down.url
    async with running(omegle(url, retries=1)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        end = await rec.wait_for("a", Disconnected)
        assert end.reason == Reason.ERROR
        assert any("stranger service" in e.text for e in rec.events("a", ServerNotice))


async def test_start_hang_and_garbage_end_the_search(server):
    server.inject("/start", "hang", times=1)
    server.inject("/start", "garbage", times=5)
    async with running(omegle(server.url, request_timeout=0.3, retries=1)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.ERROR
        assert any("not the Omegle protocol" in e.text for e in rec.events("a", ServerNotice))


async def test_send_failures_end_the_chat(server, http):
    async with running(omegle(server.url, retries=1)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        server.inject("/send", "500", times=1)
        rec.send("a", Message("retried once"))
        await s.wait_for("gotMessage", "retried once")
        server.inject("/send", "reset", times=2)
        rec.send("a", Message("lost"))
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.ERROR
        await s.wait_for("strangerDisconnected")  # the bridge still said goodbye
        await s.close()


async def test_typing_failures_do_not_end_the_chat(server, http):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        server.inject("/typing", "500", times=1)
        rec.send("a", Typing())
        rec.send("a", Message("fine"))
        await s.wait_for("gotMessage", "fine")
        assert rec.events("a", Disconnected) == []
        await s.close()


async def test_empty_answers_never_spin():
    async with OmegleTestServer(poll_window=0) as server:
        async with running(omegle(server.url, min_poll_interval=0.1)) as b:
            rec = b.platforms["rec"]
            rec.send("a", Start())
            await rec.wait_for("a", Waiting)
            loop = asyncio.get_running_loop()
            began, first = loop.time(), server.paths().count("/events")
            async with asyncio.timeout(10):
                while server.paths().count("/events") < first + 6:
                    await asyncio.sleep(0.01)
            took = loop.time() - began
        # A spinning client makes hundreds of requests a second; this one waits min_poll_interval
        # between empty answers, so six more polls take at least five intervals (a slow machine only
        # makes it longer).
        assert took >= 5 * 0.1


async def test_stop_while_start_is_under_way_leaves_nobody_queued(server):
    server.inject("/start", "slow", times=1)
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        await asyncio.sleep(0.05)
        rec.send("a", Disconnected())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.USER
        async with asyncio.timeout(5):
            while "/disconnect" not in server.paths():
                await asyncio.sleep(0.02)
        assert [c for c in server.clients.values() if c.alive] == []
        assert server.waiting == []


async def test_rapid_next_while_searching(server, http):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        for _ in range(5):
            server.inject("/start", "slow", times=1)
            rec.send("a", Start())
        assert len(await rec.wait_count("a", Disconnected, 4)) == 4  # "next" four times
        async with asyncio.timeout(5):  # every abandoned /start is disconnected once it answers
            while server.starting or server.paths().count("/disconnect") != len(server.clients) - 1:
                await asyncio.sleep(0.02)
        assert len([c for c in server.clients.values() if c.alive]) == 1
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        await s.send("the last one")
        assert (await rec.wait_for("a", Message)).text == "the last one"
        assert len([c for c in server.clients.values() if c.alive]) == 2
        await s.close()


async def test_group_mode_is_refused(server):
    async with running(omegle(server.url)) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(mode=Mode.GROUP))
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.REFUSED
        assert "group" in rec.events("a", ServerNotice)[0].text
    assert server.requests == []


async def test_old_server_quoted_start(http):
    async with OmegleTestServer() as server:
        server.quoted_start = True
        async with running(omegle(server.url)) as b:
            rec = b.platforms["rec"]
            rec.send("a", Start())
            await rec.wait_for("a", Waiting)
            server.quoted_start = False  # the stranger's helper wants the JSON answer
            s = await Stranger(http, server.url).start()
            await rec.wait_for("a", Connected)
            await s.send("old school")
            assert (await rec.wait_for("a", Message)).text == "old school"
            await s.close()


async def test_online_uses_status_when_no_chat_said(server):
    server.count = 777
    async with running(omegle(server.url)) as b:
        assert await b.backends["omegle"].online() == 777


# ---- restart: resume and abandon -------------------------------------------------------------


async def _orphan_pair(server, http) -> tuple[Stranger, Stranger]:
    """Two paired clients; the first stands for a chat a previous bridge process had open."""
    ours = await Stranger(http, server.url).start()
    theirs = await Stranger(http, server.url).start()
    await ours.wait_for("connected")
    await ours.close()  # the old process died: nobody polls any more
    return ours, theirs


def _record(room_id: str, server_url: str, client_id: str, state: str = "chatting") -> SessionRecord:
    handle = json.dumps({"server": server_url, "id": client_id})
    return SessionRecord(room=Room("rec", room_id), state=state, backend="omegle", handle=handle, start={"mode": "random"})


async def test_resume_after_restart_continues_the_chat(server, http):
    ours, theirs = await _orphan_pair(server, http)
    store = MemoryStore()
    await store.save_session(_record("a", server.url, ours.id))
    await store.save_session(_record("gone", server.url, "shard2:unknown-id"))
    async with running(omegle(server.url), store=store) as b:
        rec = b.platforms["rec"]
        await theirs.send("did you survive?")
        assert (await rec.wait_for("a", Message)).text == "did you survive?"
        rec.send("a", Message("yes, resumed"))
        await theirs.wait_for("gotMessage", "yes, resumed")
        # the unknown id: the first poll tells, and the room hears it once
        assert (await rec.wait_for("gone", Disconnected)).reason == Reason.RESTART
        assert len(rec.events("gone")) == 1
        rec.send("a", Disconnected())
        await theirs.wait_for("strangerDisconnected")
    await theirs.close()


async def test_resume_refuses_foreign_servers_and_bad_handles(server):
    backend = OmegleBackend("omegle", OmegleConfig(plugin="omegle", servers=[server.url]))
    async with backend:
        assert await backend.resume(json.dumps({"server": "http://evil.example", "id": "x"})) is None
        assert await backend.resume("not json") is None
        assert await backend.resume(json.dumps({"server": server.url})) is None
        await backend.abandon(json.dumps({"server": "http://evil.example", "id": "x"}))
    assert server.requests == []


async def test_abandon_tells_the_stranger(server, http):
    ours, theirs = await _orphan_pair(server, http)
    backend = OmegleBackend("omegle", OmegleConfig(plugin="omegle", servers=[server.url + "/"]))
    async with backend:
        await backend.abandon(json.dumps({"server": server.url, "id": ours.id}))
    await theirs.wait_for("strangerDisconnected")
    await theirs.close()


async def test_handle_is_client_id_and_server(server, http):
    backend = OmegleBackend("omegle", OmegleConfig(plugin="omegle", servers=[server.url], poll_timeout=2))
    async with backend:
        chat = await backend.connect(Start())
        events = chat.events()
        assert await anext(events) == Waiting()
        assert await anext(events) == Waiting()  # the server's own "waiting" from /start
        handle = json.loads(chat.handle)
        assert handle == {"server": server.url, "id": server.only_client().id}
        assert server.only_client().id not in repr(chat)
        await chat.aclose()
        await chat.aclose()  # idempotent
        await events.aclose()
    assert server.paths().count("/disconnect") == 1


def test_config_validation():
    with pytest.raises(ValueError):
        OmegleConfig(plugin="omegle", servers=[])
    with pytest.raises(ValueError):
        OmegleConfig(plugin="omegle", servers=["ftp://x.example"])
    with pytest.raises(ValueError):
        OmegleConfig(plugin="omegle", servers=["http://x.example"], surprise=1)
    cfg = OmegleConfig(plugin="omegle", servers=["http://127.0.0.1:8080/"])
    assert cfg.servers == ("http://127.0.0.1:8080",) and cfg.stop_common_likes_after == 10.0
    assert protocol.SPY_LABELS == ("Stranger 1", "Stranger 2")
