"""The pychat backend through the router: recording rooms that meet in a local pychat server's rooms."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Disconnected, Edit, Message, Reaction, Reason, ServerNotice, Start, Typing
from plugins.pychat.backend import NOTHING_ASCII, SOME_DROPPED
from tests.failures import told_once
from tests.core.richplatform import RICH
from tests.helpers import running


def cfg(port: int, **backend) -> dict:
    return {
        "backends": {"p": {"plugin": "pychat", "host": "127.0.0.1", "port": port, **backend}},
        "bridge": {"default_backend": "p", "user_rate": 1000.0, "user_burst": 1000},
    }


def texts(rec, room: str) -> list[str]:
    return [e.text for e in rec.events(room, Message)]


def notices(rec, room: str) -> list[str]:
    return [e.text for e in rec.events(room, ServerNotice)]


async def has_text(rec, room: str, text: str, timeout: float = 5.0) -> None:
    await rec.wait_for(room, lambda e: isinstance(e, Message) and e.text == text, timeout=timeout)


async def meet(rec, server) -> None:
    """a joins an empty room; b joins the same room; a sees b's join line; b sees a's first words."""
    rec.send("a", Start())
    async with asyncio.timeout(5):
        while server.occupancy() != [1]:
            await asyncio.sleep(0.01)
    rec.send("b", Start())
    await rec.wait_for("a", Connected)
    async with asyncio.timeout(5):  # the room lists b just after b's thread starts (the real server too)
        while server.occupancy() != [2]:
            await asyncio.sleep(0.01)
    rec.send("a", Message("hello b"))
    await has_text(rec, "b", "hello b")
    assert len(rec.events("b", Connected)) == 1


async def test_two_rooms_chat_both_ways(pychat):
    server = await pychat()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        assert server.occupancy() == [2]
        rec.send("b", Message("hi a, <b>bold</b>?"))
        await has_text(rec, "a", "hi a, <b>bold</b>?")
        rec.send("b", Typing())  # pychat has no typing: nothing is sent, nothing breaks
        rec.send("a", Message("bye"))
        await has_text(rec, "b", "bye")
        # On the wire: the join line, then NAME: text, all ASCII.
        room = next(iter(server.rooms.values()))
        wire = b"".join(room.received)
        assert wire.startswith(b"Server: Stranger acabou de se juntar ao chat, diga ola!")
        assert b"Stranger: hello b" in wire and b"Stranger: hi a, <b>bold</b>?" in wire
        # a leaves: the quit line reaches b, whose chat ends as "the stranger left".
        rec.send("a", Disconnected())
        end = await rec.wait_for("b", Disconnected)
        assert end.reason == Reason.STRANGER
        await rec.wait_for("a", lambda e: isinstance(e, Disconnected) and e.reason == Reason.USER)
        assert b"Server: Stranger saiu do chat." in b"".join(room.received)


async def test_merged_chunks_become_separate_messages(pychat):
    server = await pychat(merge_window=0.2)
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        tokens = [f"tok{n}" for n in range(10)]
        for token in tokens:
            rec.send("a", Message(token))
        await has_text(rec, "b", "tok9")
        assert texts(rec, "b")[-10:] == tokens  # ten messages, in order, from merged chunks
        room = next(iter(server.rooms.values()))
        assert any(b"tok0" in c for c in room.received)


async def test_a_long_message_cut_at_1024_bytes_is_joined_again(pychat):
    server = await pychat(split=True)
    # A generous framing_wait: on a loaded machine the rest of a cut chunk can come late, and this
    # test is about joining the cut, not about how long we wait for it.
    async with running(cfg(server.port, framing_wait=2.0)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        long = " ".join(f"word{n:04d}" for n in range(180))  # 1,619 characters: two lines, cut by reads
        rec.send("a", Message(long))
        rec.send("a", Message("after"))
        await has_text(rec, "b", "after")
        got = texts(rec, "b")
        assert "".join(got[1:-1]).replace(" ", "") == long.replace(" ", "")
        assert len(got[1:-1]) == 2  # the two lines we wrote, whatever the server's cuts


async def test_non_ascii_is_transliterated_or_refused_with_a_notice(pychat):
    server = await pychat()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        rec.send("a", Message("Olá, ação é ótima 😀"))
        await has_text(rec, "b", "Ola, acao e otima")
        assert SOME_DROPPED in notices(rec, "a")
        rec.send("a", Message("日本語"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text == NOTHING_ASCII)
        rec.send("a", Message("plain"))
        await has_text(rec, "b", "plain")
        room = next(iter(server.rooms.values()))
        assert all(chunk.isascii() for chunk in room.received)
        assert server.dropped == 0
        assert not rec.events("a", Disconnected)


async def test_a_message_cannot_fake_the_quit_line(pychat):
    server = await pychat(merge_window=0.2)
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        rec.send("a", Message("Server: Stranger saiu do chat."))
        rec.send("a", Message("still here"))
        await has_text(rec, "b", "still here")
        assert not rec.events("b", Disconnected)


async def test_joins_are_serialised_so_rooms_hold_two(pychat):
    server = await pychat()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        for room in "abcd":
            rec.send(room, Start())
        async with asyncio.timeout(10):
            while server.occupancy() != [2, 2]:
                await asyncio.sleep(0.02)
        assert len(server.rooms) == 2  # no dead room of one, no room of three
        async with asyncio.timeout(5):
            while sum(bool(rec.events(r, Connected)) for r in "abcd") < 2:
                await asyncio.sleep(0.02)


async def test_control_overlapping_joins_break_the_matchmaking(pychat):
    # Proves the server above has the real quirk: clients that join at once get rooms of their own.
    server = await pychat()

    async def join() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        port = int(await reader.read(5))
        writer.close()
        await asyncio.sleep(0.1)
        _, room = await asyncio.open_connection("127.0.0.1", port)
        return room

    writers = await asyncio.gather(*(join() for _ in range(4)))
    async with asyncio.timeout(5):
        while server.accepted < 4:  # every room counted its member
            await asyncio.sleep(0.01)
    assert server.occupancy() == [1, 1, 1, 1]
    for writer in writers:
        writer.close()


async def test_joining_a_room_with_someone_already_waiting_connects_on_first_words(pychat):
    server = await pychat()
    # A reference-style client is alone in a room, having said its join line long ago.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    port = int(await reader.read(5))
    writer.close()
    room_reader, room_writer = await asyncio.open_connection("127.0.0.1", port)
    room_writer.write(b"Server: Ana acabou de se juntar ao chat, diga ola!")
    async with asyncio.timeout(5):
        while server.occupancy() != [1]:
            await asyncio.sleep(0.01)
    async with running(cfg(server.port, name="Zed")) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        assert await room_reader.readexactly(len(b"Server: Zed acabou de se juntar ao chat, diga ola!")) == (
            b"Server: Zed acabou de se juntar ao chat, diga ola!"
        )
        async with asyncio.timeout(5):  # the room lists us just after our thread starts: Ana's words before that reach nobody
            while server.occupancy() != [2]:
                await asyncio.sleep(0.01)
        room_writer.write(b"Ana: oi ZedAna: tudo bem?")  # two lines merged, from a name never announced to us
        await has_text(rec, "a", "tudo bem?")
        assert texts(rec, "a") == ["oi Zed", "tudo bem?"]
        assert len(rec.events("a", Connected)) == 1
        rec.send("a", Message("hi Ana"))
        assert await room_reader.readexactly(len(b"Zed: hi Ana")) == b"Zed: hi Ana"
        room_writer.write(b"Server: Ana saiu do chat.")
        end = await rec.wait_for("a", Disconnected)
        assert end.reason == Reason.STRANGER
    room_writer.close()


async def test_a_server_reset_ends_the_session_with_a_notice(pychat):
    server = await pychat()
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        before = {room: len(rec.events(room)) for room in "ab"}
        server.reset()
        rec.send("a", Message("into the reset"))  # the write may fail before the reader sees the reset: still one end
        for room in "ab":
            await rec.wait_for(room, Disconnected)
            said = told_once(rec, room, before[room])
            assert said is not None and "pychat server" in said.text
        before = len(rec.events("a"))
        rec.send("a", Start())  # the server is gone: a notice, not a hang
        await rec.wait_count("a", Disconnected, 2, timeout=10)
        assert told_once(rec, "a", before).text == "The pychat server could not be reached."


async def test_test_server_drops_a_member_that_sends_non_ascii(pychat):
    server = await pychat()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    port = int(await reader.read(5))
    writer.close()
    _, room_writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):  # like the real server, a member is listed just after its thread starts
        while server.occupancy() != [1]:
            await asyncio.sleep(0.01)
    room_writer.write("Ana: olá".encode())
    async with asyncio.timeout(5):
        while server.dropped != 1:
            await asyncio.sleep(0.01)
    assert server.deaths == 1 and server.occupancy() == [1]  # the thread died; the room still lists Ana
    room_writer.close()


async def test_an_edit_crosses_a_pychat_room_as_corrected_and_a_reaction_as_nothing(pychat):
    server = await pychat()
    async with running({**cfg(server.port), "platforms": {"rec": {"plugin": RICH}}}) as bridge:
        rec = bridge.platforms["rec"]
        await meet(rec, server)
        rec.send("a", Message("see you at 5", ref="a1"))
        await has_text(rec, "b", "see you at 5")
        rec.send("a", Edit("a1", "see you at 6"))
        rec.send("a", Reaction("a1", "+1"))  # a reaction to one's own line: nothing on a text-only chat
        rec.send("a", Message("marker", ref="a2"))
        await has_text(rec, "b", "marker")
        assert texts(rec, "b")[-3:] == ["see you at 5", "* corrected: see you at 6", "marker"]
