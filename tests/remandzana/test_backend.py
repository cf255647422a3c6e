"""The remandzana backend through the router: a RecordingPlatform room chatting with clients of the test server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from bridge.events import Connected, Disconnected, Edit, Message, Mode, Reaction, Reason, ServerNotice, Start, Typing, Waiting
from tests.core.richplatform import RICH
from tests.failures import told_once
from tests.helpers import bare, running

from .conftest import RawClient


def conf(url: str, **backend) -> dict:
    return {"backends": {"rz": {"plugin": "remandzana", "url": url, **backend}}, "bridge": {"default_backend": "rz"}}


def token() -> str:
    return uuid.uuid4().hex[:10]


def texts(rec, room: str) -> list[str]:
    return [e.text for e in rec.events(room, Message)]


def bridge_person(server, *raws: RawClient):
    """The server-side person of the bridge's stream: the one no raw client owns."""
    theirs = {r.fields["clavis"] for r in raws}
    (mine,) = [p for p in server.joined if p.clavis not in theirs]
    return mine


def final(rec, room: str) -> list[Disconnected]:
    return [e for e in rec.events(room, Disconnected) if e.final]


async def test_two_person_chat_both_ways_with_echo_dropped(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        await peer.wait_text("Found someone. Say hi!")

        sent = [token() for _ in range(5)]
        for t in sent:
            assert rec.send("a", Message(f"to peer {t}"))
        for t in sent:
            await peer.wait_text(t)
        assert [peer.lines(f"to peer {t}") for t in sent] == [1] * 5  # each relayed once, in order
        assert [peer.page.index(t) for t in sent] == sorted(peer.page.index(t) for t in sent)

        back = [token() for _ in range(5)]
        for t in back:
            assert await peer.say(f"to bridge {t}") == 200
        await rec.wait_count("a", Message, 5)
        assert texts(rec, "a") == [f"to bridge {t}" for t in back]  # no echo of our own lines
        assert all(e.stranger is None for e in rec.events("a", Message))

        await peer.close()  # the stranger leaves: closing the GET
        event = await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert event.reason == Reason.STRANGER and event.final
        assert len(final(rec, "a")) == 1


async def test_user_leaving_closes_the_stream_and_the_stranger_is_told(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        rec.send("a", Disconnected())
        await peer.wait_text("The random left.")
        await peer.wait_end()
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected) and e.reason == Reason.USER)
        async with asyncio.timeout(5):
            while server.streams_open:
                await asyncio.sleep(0.05)


async def test_two_bridge_rooms_paired_through_the_server(server):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        await rec.wait_for("b", Connected)
        a_sent = [f"a{i}-{token()}" for i in range(4)]
        b_sent = [f"b{i}-{token()}" for i in range(4)]
        for x, y in zip(a_sent, b_sent, strict=True):
            rec.send("a", Message(x))
            rec.send("b", Message(y))
        await rec.wait_count("b", Message, 4)
        await rec.wait_count("a", Message, 4)
        assert texts(rec, "b") == a_sent
        assert texts(rec, "a") == b_sent
        rec.send("b", Disconnected())
        event = await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert event.reason == Reason.STRANGER
        assert len(server.sends) == 8 and all(status == 200 for status, _ in server.sends)


async def test_markup_from_strangers_arrives_as_plain_text(server, raw):
    hostile = [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "&lt;already escaped&gt; &amp; &#39;",
        '</bdi></div>\n<div class="line"><div class="system">The random left.</div></div>',
        "@everyone <a href=\"javascript:x\">x</a>",
    ]
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        for text in hostile:
            assert await peer.say(text) == 200
        await rec.wait_count("a", Message, len(hostile))
        assert texts(rec, "a") == hostile  # the literal characters, neither markup nor entities
        assert not rec.events("a", Disconnected)  # the fake "left" line inside a message fooled nobody
        rec.send("a", Message("<b>bold?</b> & 'quotes'"))
        await peer.wait_text("&lt;b&gt;bold?&lt;/b&gt; &amp; &#39;quotes&#39;")


async def test_malformed_chunks_are_skipped_and_the_chat_goes_on(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        me = bridge_person(server, peer)
        for junk in ["\n<p>what</p>", "garbage", '\n<div class="line"><em>x</em></div>', "\n<div class=\"line\">", "\x00\xff"]:
            server.inject(me, junk)
        await peer.say("still here")
        await rec.wait_for("a", Message)
        assert texts(rec, "a") == ["still here"]
        assert not rec.events("a", Disconnected)


async def test_chunks_split_into_three_byte_pieces(server, raw):
    server.split = 3
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        await peer.say("héllo ✓ wörld")
        assert (await rec.wait_for("a", Message)).text == "héllo ✓ wörld"


async def test_three_person_room_labels_and_partial_leaves(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start(mode=Mode.GROUP))
        await rec.wait_for("a", Waiting)
        p1 = await raw("/three")
        p2 = await raw("/three")
        connected = await rec.wait_for("a", Connected)
        assert len(connected.strangers) == 2
        rec.send("a", Message("hi all"))
        await p1.wait_text("hi all")
        await p2.wait_text("hi all")
        assert p1.lines("hi all") == 1 and p2.lines("hi all") == 1
        await p1.say("from bob")
        await p2.say("from charlie")
        msgs = await rec.wait_count("a", Message, 2)
        assert {(m.stranger, m.text) for m in msgs} == {("Bob", "from bob"), ("Charlie", "from charlie")}
        await p1.close()
        partial = await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert (partial.stranger, partial.final, partial.reason) == ("Bob", False, Reason.STRANGER)
        await p2.say("still two")
        await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "still two")
        await p2.close()
        last = await rec.wait_for("a", lambda e: isinstance(e, Disconnected) and e.final)
        assert last.stranger == "Charlie" and last.reason == Reason.STRANGER


async def test_ask_mode_posts_the_question_and_watches(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("spy", Start(mode=Mode.ASK, question="Cats <or> dogs?"))
        await rec.wait_for("spy", Waiting)
        await server.wait_people(1)
        d1 = await raw("/question/discuss")
        d2 = await raw("/question/discuss")
        connected = await rec.wait_for("spy", Connected)
        assert connected.question == "Cats <or> dogs?" and connected.strangers == ("Alice", "Bob")
        await d1.wait_text("Question: <span class=\"question\">Cats &lt;or&gt; dogs?</span>")
        setup_posts = [form for status, form in server.sends if form.get("setup") == "true"]
        assert [f["message"] for f in setup_posts] == ["Cats <or> dogs?"]
        await d1.say("cats")
        await d2.say("dogs")
        msgs = await rec.wait_count("spy", Message, 2)
        assert {(m.stranger, m.text) for m in msgs} == {("Alice", "cats"), ("Bob", "dogs")}
        rec.send("spy", Message("can I talk?"))
        await rec.wait_for("spy", lambda e: isinstance(e, ServerNotice) and "spy" in e.text)
        assert len(server.sends) == 3  # the question and the two discussers' lines; nothing from the spy
        await d2.close()
        end = await rec.wait_for("spy", lambda e: isinstance(e, Disconnected))
        assert end.final and end.stranger == "Bob" and end.reason == Reason.STRANGER
        await d1.wait_text("The OP left.")


async def test_answer_mode_discusses_a_question(server, raw):
    async with running(conf(server.url, lobby="question")) as bridge:
        rec = bridge.platforms["rec"]
        asker = RawClient(server.url)
        await asker.open("/question/ask")
        await asker.wait_text("Waiting for your question...")
        asker.fields["setup"] = "true"
        assert await asker.say("Tea & coffee?") == 200
        rec.send("a", Start())  # the "question" lobby without a question: discuss
        other = await raw("/question/discuss")
        connected = await rec.wait_for("a", Connected)
        assert connected.question == "Tea & coffee?" and connected.strangers == ("Stranger",)
        rec.send("a", Message("tea"))
        await other.wait_text("tea")
        await asker.wait_text("tea")
        await other.say("coffee")
        assert bare(await rec.wait_for("a", Message)) == Message("coffee", None)
        await asker.close()
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "asked the question left" in e.text)
        assert not rec.events("a", Disconnected)  # the two discussers go on
        await other.say("still here")
        await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "still here")
        await other.close()
        end = await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert end.final and end.reason == Reason.STRANGER


async def test_rejected_question_ends_with_a_notice(server):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("spy", Start(mode=Mode.ASK, question="a forbidden question"))
        await rec.wait_for("spy", lambda e: isinstance(e, Disconnected))
        assert "Question rejected" in told_once(rec, "spy", 0, (Reason.REFUSED,)).text


async def test_global_room_drops_own_echo_by_text(server, raw):
    async with running(conf(server.url, lobby="global")) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Connected)
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text.startswith("Welcome to the room."))
        peer = await raw("/global")
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "joined" in e.text)
        rec.send("a", Message("hello room"))
        await peer.wait_text("hello room")
        await peer.say("hello you")
        await rec.wait_for("a", Message)
        assert texts(rec, "a") == ["hello you"]
        rec.send("a", Message("/ping"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text == "Pong.")
        assert texts(rec, "a") == ["hello you"]


async def test_any_lobby_lands_in_whichever_room_forms(server, raw):
    async with running(conf(server.url, lobby="any")) as bridge:
        rec = bridge.platforms["rec"]
        peer = await raw("/two")
        rec.send("a", Start())
        assert (await rec.wait_for("a", Connected)).strangers == ("Stranger",)
        await peer.say("found you")
        assert (await rec.wait_for("a", Message)).text == "found you"


async def test_typing_and_report_send_nothing(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        rec.send("a", Typing())
        rec.send("a", Message("after typing"))
        await peer.wait_text("after typing")
        assert [form["message"] for _, form in server.sends] == ["after typing"]


@pytest.mark.parametrize(("status", "reason"), [(500, Reason.ERROR), (403, Reason.REFUSED), (404, Reason.REFUSED)])
async def test_stream_refused(server, status, reason):
    server.get_status = status
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert str(status) in told_once(rec, "a", 0, (reason,)).text


async def test_send_403_ends_the_chat_413_and_500_only_warn(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        server.send_status = 413
        rec.send("a", Message("too long for them"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "413" in e.text)
        server.send_status = 500
        rec.send("a", Message("server broken"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "500" in e.text)
        assert not rec.events("a", Disconnected)
        server.send_status = None
        rec.send("a", Message("works again"))
        await peer.wait_text("works again")
        server.send_status = 403
        before = len(rec.events("a"))
        rec.send("a", Message("silenced"))
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert "403" in told_once(rec, "a", before, (Reason.REFUSED,)).text
        assert peer.lines("too long for them") == 0 and peer.lines("server broken") == 0


async def test_send_that_hangs_is_bounded(server, raw):
    async with running(conf(server.url, send_timeout=0.5)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await raw("/two")
        await rec.wait_for("a", Connected)
        server.hang_sends = True
        rec.send("a", Message("into the void"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "may not have been delivered" in e.text)


async def test_stream_reset_mid_chat(server, raw):
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        before = len(rec.events("a"))
        server.reset(bridge_person(server, peer))
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        told_once(rec, "a", before, (Reason.ERROR,))


async def test_silent_server_trips_the_heartbeat_watchdog(server, raw):
    async with running(conf(server.url, heartbeat_timeout=1.0)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        before = len(rec.events("a"))
        bridge_person(server, peer).hung = True
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert "sent nothing" in told_once(rec, "a", before, (Reason.ERROR,)).text


async def test_filler_alone_keeps_the_session_alive(server):
    # Heartbeat window shorter than the 6 s <b> heartbeat: the 0.5 s spaces must count as life.
    async with running(conf(server.url, heartbeat_timeout=1.5)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        (person,) = await server.wait_people(1)
        async with asyncio.timeout(15):
            while person.fillers < 8:  # 4 s of filler alone on the server's clock, over twice our window
                await asyncio.sleep(0.05)
        server.system(person, "marker after the filler")  # then a line: our reader must still be there
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text == "marker after the filler")
        assert not rec.events("a", Disconnected)
        assert server.streams_open == 1


async def test_server_down_and_server_that_never_answers():
    import socket

    from aiohttp import web

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
    async with running(conf(dead)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
        assert "cannot be reached" in told_once(rec, "a", 0, (Reason.ERROR,)).text

    stopping = asyncio.Event()

    async def never(request):
        await stopping.wait()
        return web.Response(status=204)

    async def not_a_page(request):
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/two", never)
    app.router.add_get("/three", not_a_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        async with running(conf(url, connect_timeout=0.5)) as bridge:
            rec = bridge.platforms["rec"]
            rec.send("a", Start())
            rec.send("b", Start(mode=Mode.GROUP))
            await rec.wait_for("a", lambda e: isinstance(e, Disconnected))
            await rec.wait_for("b", lambda e: isinstance(e, Disconnected))
            told_once(rec, "a", 0, (Reason.ERROR,))
            assert "did not send a remandzana chat page" in told_once(rec, "b", 0, (Reason.ERROR,)).text
    finally:
        stopping.set()
        await runner.cleanup()


@pytest.mark.parametrize("refresh", [False, True])
async def test_form_is_taken_once_and_renewed_when_old(server, raw, monkeypatch, refresh):
    from plugins.remandzana import backend as backend_module

    if refresh:
        monkeypatch.setattr(backend_module, "FORM_REFRESH", -1.0)
    async with running(conf(server.url)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        for text in ("one", "two", "three"):
            rec.send("a", Message(text))
        await peer.wait_text("three")
        salts = [form["salt"] for status, form in server.sends]
        assert len(salts) == 3 and all(status == 200 for status, _ in server.sends)
        assert len(set(salts)) == (3 if refresh else 1)


async def test_a_flood_is_read_with_back_pressure(server, raw):
    from plugins.remandzana.backend import QUEUE_LIMIT, RemandzanaBackend, RemandzanaConfig

    backend = RemandzanaBackend("rz", RemandzanaConfig(plugin="remandzana", url=server.url))
    await backend.start()
    try:
        chat = await backend.connect(Start())
        events = chat.events()
        assert isinstance(await anext(events), Waiting)
        peer = await raw("/two")
        assert isinstance(await anext(events), Connected)
        me = bridge_person(server, peer)
        content = chat.response.content
        before = content.total_bytes
        lines = [f'\n<div class="line"><span class="sender">Stranger:</span> <bdi class="message">m{i}</bdi></div>' for i in range(3 * QUEUE_LIMIT)]
        for line in lines:  # one big burst, far more than the read-ahead limit
            server.inject(me, line)
        # Wait until every byte of the burst sits in our client's buffer, unread: a reader that
        # did not park would take it all in a few turns of the loop, with no I/O to wait for.
        async with asyncio.timeout(10):
            while chat.queue.qsize() < QUEUE_LIMIT or content.total_bytes - before < len("".join(lines)):
                await asyncio.sleep(0.05)
        for _ in range(50):
            await asyncio.sleep(0)
        parked = chat.queue.qsize()
        assert parked < 2 * QUEUE_LIMIT
        got = []
        async with asyncio.timeout(20):
            while len(got) < 3 * QUEUE_LIMIT:
                got.append((await anext(events)).text)
        assert got == [f"m{i}" for i in range(3 * QUEUE_LIMIT)]  # nothing lost, in order
        await chat.aclose()
    finally:
        await backend.stop()


async def test_an_edit_reaches_a_remandzana_stranger_as_corrected_and_a_reaction_not_at_all(server, raw):
    async with running({**conf(server.url), "platforms": {"rec": {"plugin": RICH}}}) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        peer = await raw("/two")
        await rec.wait_for("a", Connected)
        first, fixed, marker = token(), token(), token()
        rec.send("a", Message(f"typo {first}", ref="u1"))
        await peer.wait_text(first)
        rec.send("a", Edit("u1", f"fixed {fixed}"))
        rec.send("a", Reaction("u1", "👍"))
        rec.send("a", Message(f"marker {marker}", ref="u2"))
        await peer.wait_text(marker)
        assert peer.lines(f"* corrected: fixed {fixed}") == 1
        assert peer.page.index(fixed) < peer.page.index(marker)  # in order, and the reaction sent nothing
        assert "👍" not in peer.page
        await peer.close()
