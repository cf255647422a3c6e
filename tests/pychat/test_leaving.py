"""Leaving a pychat room without tripping the server's threaded cleanup race (issue 9 item 16)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from types import SimpleNamespace

from bridge.events import Connected, Disconnected, Message, Reason, Start
from plugins.pychat import backend as backend_module
from plugins.pychat.protocol import join_line, quit_line
from tests.helpers import running

from .server import Room
from .test_backend import cfg, has_text


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Person:
    """A reference-style client: redirect, room connection, join line; reads what the room copies."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer
        self.seen = b""

    @classmethod
    async def join(cls, server, name: str) -> Person:
        accepted = server.accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        data = b""
        while len(data) < 4:  # the test server's ports have 4 or 5 digits; read until the port is whole
            data += await reader.read(5)
            try:
                port = int(data)
            except ValueError:
                continue
            if port * 10 > 65535 or len(data) == 5:
                break
        writer.close()
        for _ in range(100):  # the room listens just after telling its port
            try:
                room_reader, room_writer = await asyncio.open_connection("127.0.0.1", int(data))
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.02)
        await until(lambda: server.accepted > accepted)  # the room counted us
        room_writer.write(join_line(name))
        return cls(name, room_reader, room_writer)

    async def expect(self, data: bytes, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while data not in self.seen:
                chunk = await self.reader.read(4096)
                assert chunk, f"{self.name}: the room closed before {data!r} came"
                self.seen += chunk

    def leave(self) -> None:
        self.writer.write(quit_line(self.name))
        self.writer.close()


async def ana_meets_us(ana: Person, server, rec) -> Room:
    """Ana, waiting alone, and our user b meet (b reads her "oi"); the room they share."""
    rec.send("b", Start())
    await ana.expect(join_line("Stranger"))
    (room,) = server.rooms.values()
    await until(lambda: len(room.members) == 2)  # the room lists us (it does so just after our thread starts)
    ana.writer.write(b"Ana: oi")
    await has_text(rec, "b", "oi")
    return room


async def chat_and_part(rec, server, turn: int, a: str, b: str, backends: tuple[str | None, str | None] = (None, None)) -> None:
    """Room a meets room b in a pychat room, a's user leaves, b is told the stranger left."""
    rec.send(a, Start(backend=backends[0]))
    await until(lambda: server.occupancy() == [1])
    rec.send(b, Start(backend=backends[1]))
    await rec.wait_for(a, Connected)
    await until(lambda: server.occupancy() == [2])
    rec.send(a, Message(f"hello {turn}"))
    await has_text(rec, b, f"hello {turn}")
    rec.send(a, Disconnected())
    end = await rec.wait_for(b, Disconnected)
    assert end.reason == Reason.STRANGER


async def test_a_stranger_who_quits_leaves_a_room_clean_for_the_next_two(pychat):
    server = await pychat(commit_time=0.05, late_listen=True)
    ana = await Person.join(server, "Ana")
    async with running(cfg(server.port, leave_grace=1.0)) as bridge:
        rec = bridge.platforms["rec"]
        room = await ana_meets_us(ana, server, rec)
        assert len(rec.events("b", Connected)) == 1
        ana.leave()
        end = await rec.wait_for("b", Disconnected)
        assert end.reason == Reason.STRANGER
        # The user was told at once: our member is still in the room, its socket closes later.
        assert not room.history[1].eof
        # Both members' server threads run their cleanup to the end; the room is gone from the table.
        await until(lambda: server.cleaned == 2)
        assert server.deaths == 0 and room.port not in server.table and not room.members
        assert quit_line("Stranger") not in b"".join(room.received)  # nothing was said into the empty room
        # The next two arrivals meet.
        cleo = await Person.join(server, "Cleo")
        dan = await Person.join(server, "Dan")
        await cleo.expect(join_line("Dan"))
        assert server.occupancy() == [2]
        for person in (cleo, dan):
            person.leave()


async def test_the_user_leaving_says_goodbye_then_closes_after_the_grace(pychat):
    server = await pychat(commit_time=0.05, late_listen=True)
    ana = await Person.join(server, "Ana")
    async with running(cfg(server.port, leave_grace=0.3)) as bridge:
        rec = bridge.platforms["rec"]
        room = await ana_meets_us(ana, server, rec)
        rec.send("b", Disconnected())
        await rec.wait_for("b", lambda e: isinstance(e, Disconnected) and e.reason == Reason.USER)
        await ana.expect(quit_line("Stranger"))
        # A stranger who leaves at once on our quit line does not race our own cleanup: we close later.
        ana.writer.close()
        await until(lambda: server.cleaned == 2)
        assert server.deaths == 0 and room.port not in server.table
        assert b"".join(room.received).count(quit_line("Stranger")) == 1


async def test_two_bridge_users_meet_again_after_one_left(pychat):
    server = await pychat(commit_time=0.05, late_listen=True)
    async with running(cfg(server.port, leave_grace=0.3)) as bridge:
        rec = bridge.platforms["rec"]
        for turn in range(2):
            await chat_and_part(rec, server, turn, f"a{turn}", f"b{turn}")
            await until(lambda: server.cleaned == 2 * (turn + 1) and not server.table)
            assert server.deaths == 0
        said = b"".join(c for room in server.rooms.values() for c in room.received)
        assert said.count(quit_line("Stranger")) == 2  # one per chat, from the user who left


async def test_two_bridges_in_one_room_close_apart_whatever_their_jitter(pychat, monkeypatch):
    # Two daemons (two backends, nothing shared) whose users met; the jitter draws are the worst
    # case: the leaver closes as late as it may, the one left behind as early as it may. The two
    # ranges do not meet, so the server's cleanup of the first is over before the second closes.
    draws = itertools.cycle([0.999, 0.0])
    monkeypatch.setattr(backend_module, "random", SimpleNamespace(random=lambda: next(draws)))
    server = await pychat(commit_time=0.05, late_listen=True)
    two = cfg(server.port, leave_grace=0.3)
    two["backends"]["q"] = dict(two["backends"]["p"])
    async with running(two) as bridge:
        rec = bridge.platforms["rec"]
        for turn in range(2):
            await chat_and_part(rec, server, turn, f"a{turn}", f"b{turn}", ("p", "q"))
            await until(lambda: server.cleaned == 2 * (turn + 1) and not server.table)
            assert server.deaths == 0


async def test_our_two_members_of_one_room_close_one_at_a_time_after_a_stall(pychat, monkeypatch):
    # Both close timers of our two members run out during one event-loop stall (a loaded
    # machine): they still close one after the other, a grace apart, and the room is cleaned up.
    monkeypatch.setattr(backend_module, "random", SimpleNamespace(random=lambda: 0.0))
    server = await pychat(commit_time=0.05, late_listen=True)
    grace = 0.5
    async with running(cfg(server.port, leave_grace=grace)) as bridge:
        rec = bridge.platforms["rec"]
        await chat_and_part(rec, server, 0, "a0", "b0")
        backend = bridge.backends["p"]
        await until(lambda: len(backend.closings.tasks) == 2)
        await asyncio.sleep(0.05)  # the two lingering tasks start their waits (1 and 3 graces)
        time.sleep(5 * grace)  # the stall under test (blocking on purpose): both waits run out inside it
        await until(lambda: server.cleaned == 2 and not server.table)
        assert server.deaths == 0
        await chat_and_part(rec, server, 1, "a1", "b1")  # and the next two meet
        await until(lambda: server.cleaned == 4 and not server.table)


async def test_a_user_who_goes_on_at_once_meets_the_next_arrival(pychat):
    # The stranger quits; our user asks for the next one at once, while our member of that room is
    # still lingering. The room's count already says one (the stranger's cleanup is over), so the
    # redirect sends the new search there: joining now would make the room look full (our two
    # members) to whoever comes next, who would get a room of their own, and the two would never
    # meet. The next arrival meets our user.
    server = await pychat(commit_time=0.05, late_listen=True)
    ana = await Person.join(server, "Ana")
    async with running(cfg(server.port, leave_grace=0.5)) as bridge:
        rec = bridge.platforms["rec"]
        room = await ana_meets_us(ana, server, rec)
        ana.leave()
        await rec.wait_for("b", Disconnected)
        await until(lambda: server.cleaned == 1 and server.table == {room.port: 1})
        rec.send("b", Start())
        await until(lambda: server.accepted == 3)  # the new search is in a room
        cleo = await Person.join(server, "Cleo")
        await until(lambda: len(rec.events("b", Connected)) == 2)  # Cleo's join line
        cleo.writer.write(b"Cleo: hi")
        await has_text(rec, "b", "hi")
        rec.send("b", Message("hi Cleo"))
        await cleo.expect(b"Stranger: hi Cleo")
        assert server.deaths == 0


async def dead_room(server) -> Room:
    """Ana and Bob meet and close at once: both server threads count the other as staying, so the
    room keeps a count of one with nobody in it (the real server's cleanup race)."""
    ana = await Person.join(server, "Ana")
    bob = await Person.join(server, "Bob")
    await ana.expect(join_line("Bob"))
    (room,) = server.rooms.values()
    await until(lambda: len(room.members) == 2)
    ana.writer.close()
    bob.writer.close()
    await until(lambda: server.cleaned == 2)
    assert server.table == {room.port: 1} and not room.members
    return room


async def test_alone_in_a_dead_room_we_move_to_where_newcomers_go(pychat):
    # A room the server's cleanup race left dead takes our user and then nobody more: its count
    # says two. Cleo, next, gets a room of her own. Our member notices at two checks in a row that
    # the redirect sends newcomers elsewhere, leaves the dead room (which deletes it) and meets Cleo.
    server = await pychat(commit_time=0.2, late_listen=True)
    dead = await dead_room(server)
    async with running(cfg(server.port, leave_grace=0.1, alone_check=0.5)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("b", Start())
        await until(lambda: len(dead.members) == 1)  # ours, alone, where nobody else will be sent
        cleo = await Person.join(server, "Cleo")
        await cleo.expect(join_line("Stranger"))
        await until(lambda: server.occupancy() == [2])  # Cleo's room lists us (just after our thread starts), the dead one is empty
        cleo.writer.write(b"Cleo: hi")
        await has_text(rec, "b", "hi")
        assert len(rec.events("b", Connected)) == 1
        rec.send("b", Message("hi Cleo"))
        await cleo.expect(b"Stranger: hi Cleo")
        await until(lambda: dead.port not in server.table and not dead.members)  # cleaned up by our leaving it
        said = b"".join(dead.received)  # ours after Ana's and Bob's: a join line and a quit line, to nobody
        assert said == join_line("Ana") + join_line("Bob") + join_line("Stranger") + quit_line("Stranger")
        assert server.deaths == 0


async def test_alone_in_a_room_newcomers_are_sent_to_we_stay(pychat):
    # Waiting alone in a sound room: the redirect sends newcomers to it at every check, so our
    # member stays (no new connection), and the next arrival meets our user there.
    server = await pychat(commit_time=0.05, late_listen=True)
    async with running(cfg(server.port, leave_grace=0.1, alone_check=0.2)) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("b", Start())
        await until(lambda: server.occupancy() == [1])
        (room,) = server.rooms.values()
        await until(lambda: server.redirects >= 4)  # our join and three checks
        assert server.accepted == 1 and len(room.members) == 1 and list(server.rooms) == [room.port]
        ana = await Person.join(server, "Ana")
        await rec.wait_for("b", Connected)  # Ana's join line
        rec.send("b", Message("hi Ana"))
        await ana.expect(b"Stranger: hi Ana")
        assert server.accepted == 2 and len(room.members) == 2 and server.deaths == 0
