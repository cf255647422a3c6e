"""The roulette backend through the router: two recording rooms paired by a local chat-roulette server."""

from __future__ import annotations

import asyncio
import json

from bridge.events import Connected, Disconnected, Message, Reason, ServerNotice, Start, StoppedTyping, Typing
from plugins.roulette.backend import NEW_STRANGER, NOT_DELIVERED
from tests.failures import told_once
from tests.helpers import running


def cfg(port: int, **backend) -> dict:
    return {
        "backends": {"r": {"plugin": "roulette", "host": "127.0.0.1", "port": port, **backend}},
        "bridge": {"default_backend": "r"},
    }


def texts(rec, room: str) -> list[str]:
    return [e.text for e in rec.events(room, Message)]


def notices(rec, room: str) -> list[str]:
    return [e.text for e in rec.events(room, ServerNotice)]


async def pair_two(rec) -> None:
    rec.send("a", Start())
    rec.send("b", Start())
    await rec.wait_for("a", Connected)
    await rec.wait_for("b", Connected)


async def test_two_rooms_chat_both_ways_with_typing_on_the_real_timings(roulette):
    # The server's defaults are the real ones: ping every second, dead after 7 s, 10 lines/s, 30 s epochs.
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        rec.send("a", Typing())
        await rec.wait_for("b", Typing)
        rec.send("a", Message("hello <b>from a</b>"))
        await rec.wait_for("b", lambda e: isinstance(e, Message) and e.text == "hello <b>from a</b>")
        assert isinstance(rec.events("b")[-2], StoppedTyping)  # synthesised before the message
        rec.send("b", Typing())
        await rec.wait_for("a", Typing)
        rec.send("b", StoppedTyping())
        await rec.wait_for("a", StoppedTyping)
        rec.send("b", Message("héllo from b 😀"))
        await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "héllo from b 😀")
        # Outlive the 7 s pong window on the server's own clock (a ping a second): our pongs keep both alive.
        async with asyncio.timeout(30):
            while not all(c.pongs >= 8 for c in server.clients.values()):
                await asyncio.sleep(0.1)
        rec.send("a", Message("still here"))
        await rec.wait_for("b", lambda e: isinstance(e, Message) and e.text == "still here", timeout=5)
        assert server.deaths == []
        assert all(c.pongs >= 7 for c in server.clients.values())
        assert not rec.events("a", Disconnected) and not rec.events("b", Disconnected)
        # Every line we wrote had the four string keys (else the server would have thrown us out).
        assert server.exits_sent == 0
        for client in server.clients.values():
            assert all(isinstance(line[k], str) for line in client.lines for k in ("cmd", "uco", "session", "nonce"))
        # Leaving: the user stops, the connection says exit.
        rec.send("a", Disconnected())
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected) and e.reason == Reason.USER)
        async with asyncio.timeout(5):
            while not any(line["cmd"] == "exit" for c in server.clients.values() for line in c.lines):
                await asyncio.sleep(0.02)


async def test_typing_payload_travels_as_json_with_a_type(roulette):
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        rec.send("a", Typing())
        await rec.wait_for("b", Typing)
        rec.send("a", Message("x1"))
        await rec.wait_for("b", Message)
        sent = [json.loads(line["data"]) for c in server.clients.values() for line in c.lines if line["cmd"] == "comm"]
        assert {"type": "typing"} in sent
        assert {"type": "message", "text": "x1"} in sent


async def test_repairing_tells_the_user_of_a_new_stranger_and_keeps_the_session(roulette):
    server = await roulette(repair_interval=1.0, seed=3)
    rooms = "abcd"
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        for room in rooms:
            rec.send(room, Start())

        def told(room: str) -> bool:
            return NEW_STRANGER in notices(rec, room)

        async with asyncio.timeout(30):
            while not any(told(room) for room in rooms):
                await asyncio.sleep(0.1)
        room = next(r for r in rooms if told(r))
        assert len(rec.events(room, Connected)) == 1  # one session on our side, not a new chat
        assert not rec.events(room, Disconnected)
        # Freeze the pairs, then every session still chats with whoever it has now.
        server.repair_interval = 3600
        async with asyncio.timeout(5):
            while sum(c.peer is not None for c in server.clients.values()) < 4:
                await asyncio.sleep(0.05)
        for r in rooms:
            rec.send(r, Message(f"hello-from-{r}"))
        for r in rooms:
            async with asyncio.timeout(5):
                while sum(f"hello-from-{r}" in texts(rec, other) for other in rooms) != 1:
                    await asyncio.sleep(0.05)
        assert server.deaths == []
        assert not any(rec.events(r, Disconnected) for r in rooms)


async def test_a_burst_of_50_is_merged_visibly_and_pongs_survive(roulette):
    # A tighter pong window than the real 7 s: a client that wrote the 50 lines at once would be
    # read 5 s later (10 lines/s) and declared dead (see the control test below).
    server = await roulette(pong_timeout=2.5)
    async with running(cfg(server.port), user_rate=1000.0, user_burst=1000, stranger_rate=1000.0, stranger_burst=1000) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        tokens = [f"tok{n:02d}" for n in range(50)]
        for token in tokens:  # 50 messages/s for a second: six times what the server reads
            assert rec.send("a", Message(token))
            await asyncio.sleep(0.02)

        def received() -> list[str]:
            return [t for text in texts(rec, "b") for t in text.split("\n")]

        async with asyncio.timeout(15):
            while len(received()) < 50:
                await asyncio.sleep(0.05)
        assert received() == tokens  # nothing lost, nothing duplicated, same order
        assert len(texts(rec, "b")) < 50  # some were merged...
        assert any("messages from you were merged into one" in n for n in notices(rec, "a"))  # ...visibly
        # Then keep the connection busy past the pong window: pongs go first and the client lives.
        for n in range(30):
            rec.send("a", Message(f"late{n}"))
            await asyncio.sleep(0.1)
        async with asyncio.timeout(10):
            while "late29" not in received():
                await asyncio.sleep(0.05)
        assert server.deaths == []
        assert not rec.events("a", Disconnected)
        assert sum("were merged into one" in n for n in notices(rec, "a")) == 1  # one notice per burst


async def test_control_a_naive_burst_gets_a_client_declared_dead(roulette):
    # Proves the server above has teeth: 50 lines at once starve the pongs behind them.
    server = await roulette(pong_timeout=2.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    keys = {"uco": "naive1", "session": "1", "nonce": "1"}
    writer.write((json.dumps({"cmd": "connect", **keys}) + "\n").encode())
    await reader.readline()  # ack
    writer.write(b"".join((json.dumps({"cmd": "comm", **keys, "data": str(n)}) + "\n").encode() for n in range(50)))

    async def pong_every_ping() -> None:
        while line := await reader.readline():
            if json.loads(line).get("cmd") == "ping":
                writer.write((json.dumps({"cmd": "pong", **keys}) + "\n").encode())

    task = asyncio.create_task(pong_every_ping())
    try:
        async with asyncio.timeout(15):
            while "naive1" not in server.deaths:
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        writer.close()


async def test_no_peer_becomes_a_not_delivered_notice(roulette):
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        server.hung = False
        server.unpair_all()
        server.repair_interval = 3600  # and keep them apart: the epoch clock says not yet...
        for c in server.clients.values():
            c.dead = True  # ...and nobody is free to pair
        rec.send("a", Message("lost in the void"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text == NOT_DELIVERED)
        assert "lost in the void" not in texts(rec, "b")
        assert not rec.events("a", Disconnected)


async def test_malformed_json_from_the_server_ends_the_session_with_a_notice(roulette):
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        before = {room: len(rec.events(room)) for room in "ab"}
        server.send_raw(b"{this is not json\n")
        for room in "ab":
            await rec.wait_for(room, Disconnected)
            assert "unreadable" in told_once(rec, room, before[room]).text
        # The daemon survives: a new chat starts and pairs.
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_count("a", Connected, 2, timeout=10)
        await rec.wait_count("b", Connected, 2, timeout=10)


async def test_a_hanging_server_ends_the_session_within_the_heartbeat(roulette):
    server = await roulette()
    async with running(cfg(server.port, heartbeat_timeout=1.5)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        before = {room: len(rec.events(room)) for room in "ab"}
        server.hang()
        for room in "ab":
            await rec.wait_for(room, Disconnected, timeout=10)
            assert "stopped answering" in told_once(rec, room, before[room]).text
        rec.send("a", Message("after"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text.lower() or
                           isinstance(e, ServerNotice) and "start a chat" in e.text.lower())


async def test_a_reset_ends_the_session_and_the_daemon_survives(roulette):
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        before = {room: len(rec.events(room)) for room in "ab"}
        server.reset()
        for room in "ab":
            await rec.wait_for(room, Disconnected, timeout=10)
            assert told_once(rec, room, before[room]) is None  # the generic "connection lost" says it
        # The server is gone: a new start fails with a notice, not a hang.
        before = len(rec.events("a"))
        rec.send("a", Start())
        await rec.wait_count("a", Disconnected, 2, timeout=10)
        assert "could not be reached" in told_once(rec, "a", before).text


async def test_server_exit_line_ends_the_session(roulette):
    server = await roulette()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await pair_two(rec)
        before = len(rec.events("a"))
        server.send_raw(b'{"exit": true, "reason": "new session"}\n')
        await rec.wait_for("a", Disconnected)
        assert "closed the connection" in told_once(rec, "a", before).text


async def test_test_server_throws_out_lines_without_the_four_keys(roulette):
    server = await roulette()
    for bad in (b'{"cmd": "connect", "uco": "x1"}\n', b"hello\n", b"[1]\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(bad)
        assert json.loads(await reader.readline()) == {"exit": True}
        assert await reader.read() == b""
        writer.close()
