"""bridge.chatstream: the chat event queue (order, nothing after the end) and close_writer on live and dead peers."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from bridge.chatstream import ChatEvents, close_writer
from bridge.events import Connected, Disconnected, Message, Reason, ServerNotice, Waiting

LAST = Disconnected(stranger="Bob", reason=Reason.STRANGER, final=False)


async def _drain(queue: ChatEvents) -> list:
    async with asyncio.timeout(10):  # a hang guard only: every case below ends by itself
        return [event async for event in queue]


# Each case: the calls made on a fresh queue, then what iterating it yields.
CASES = {
    "order is kept": (
        [("emit", Waiting()), ("emit", Connected()), ("emit", Message("a")), ("emit", Message("b")), ("end", None, Reason.STRANGER)],
        [Waiting(), Connected(), Message("a"), Message("b"), Disconnected(reason=Reason.STRANGER)],
    ),
    "nothing after the final Disconnected": (
        [("emit", Message("a")), ("emit", Disconnected()), ("emit", Message("late")), ("end", "late notice"), ("finish",)],
        [Message("a"), Disconnected()],
    ),
    "end with a notice": (
        [("emit", Waiting()), ("end", "The server went away.")],
        [Waiting(), ServerNotice("The server went away."), Disconnected(reason=Reason.ERROR)],
    ),
    "end without a notice": (
        [("end", None, Reason.REFUSED)],
        [Disconnected(reason=Reason.REFUSED)],
    ),
    "end naming who left": (
        [("end", None, Reason.STRANGER, "Bob")],
        [Disconnected(stranger="Bob", reason=Reason.STRANGER)],
    ),
    "an empty notice is still a notice": (
        [("end", "")],
        [ServerNotice(""), Disconnected(reason=Reason.ERROR)],
    ),
    "a group member leaving does not end it": (
        [("emit", LAST), ("emit", Message("still here")), ("end", None, Reason.STRANGER)],
        [LAST, Message("still here"), Disconnected(reason=Reason.STRANGER)],
    ),
    "finish stops after what was queued": (
        [("emit", Waiting()), ("emit", Message("a")), ("finish",), ("emit", Message("after")), ("end", "after")],
        [Waiting(), Message("a")],
    ),
    "finish twice is finish once": (
        [("finish",), ("finish",)],
        [],
    ),
    "the first end wins": (
        [("end", "first", Reason.STRANGER), ("end", "second", Reason.ERROR)],
        [ServerNotice("first"), Disconnected(reason=Reason.STRANGER)],
    ),
}


@pytest.mark.parametrize("calls, expected", list(CASES.values()), ids=list(CASES))
async def test_queue_yields(calls, expected):
    queue = ChatEvents()
    for name, *args in calls:
        getattr(queue, name)(*args)
    assert await _drain(queue) == expected


async def test_final_is_set_by_a_final_disconnected_only():
    queue = ChatEvents()
    queue.emit(Message("a"))
    queue.emit(LAST)
    assert not queue.final
    queue.finish()
    assert not queue.final  # closed is not over: the chat did not end
    other = ChatEvents()
    other.end()
    other.emit(Message("late"))  # dropped, not merely left unread behind the end
    other.end("late")
    assert other.final and other.qsize() == 1


async def test_iteration_waits_for_events_then_ends_at_the_final_one():
    queue = ChatEvents()
    got: list = []

    async def read() -> None:
        async for event in queue:
            got.append(event)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    queue.emit(Waiting())
    queue.emit(Message("x"))
    await asyncio.sleep(0)
    assert got == [Waiting(), Message("x")] and not reader.done()
    queue.end(None, Reason.STRANGER)
    async with asyncio.timeout(10):
        await reader
    assert got[-1] == Disconnected(reason=Reason.STRANGER)


async def test_iteration_ends_at_finish_while_waiting():
    queue = ChatEvents()
    reader = asyncio.create_task(_drain(queue))
    await asyncio.sleep(0)
    queue.emit(Waiting())
    queue.finish()
    assert await reader == [Waiting()]


async def test_drained_returns_once_the_reader_took_down_to_low_water():
    queue = ChatEvents(low_water=2)
    for i in range(6):
        queue.emit(Message(str(i)))
    waiter = asyncio.create_task(queue.drained())
    events = aiter(queue)
    for expected in ("0", "1", "2"):  # 5, 4, 3 left: still above low water
        assert (await anext(events)).text == expected
        await asyncio.sleep(0)
        assert not waiter.done()
    assert (await anext(events)).text == "3"  # 2 left
    async with asyncio.timeout(10):
        await waiter
    assert queue.qsize() == 2


# ---- close_writer over real sockets -----------------------------------------------------------


@pytest.fixture
async def peer():
    """A local TCP server; `mode` says what it does with a connection: read all, never read, or reset."""
    got: list[bytes] = []
    mode = {"value": "read"}
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if mode["value"] == "read":
            got.append(await reader.read())
            writer.close()
        elif mode["value"] == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST: the peer is gone
        # "stall": hold the connection open and never read

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect(how: str) -> asyncio.StreamWriter:
        mode["value"] = how
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        return writer

    connect.got = got  # type: ignore[attr-defined]
    yield connect
    for writer in held:
        writer.transport.abort()
    server.close()
    await server.wait_closed()


async def _served(peer, count: int) -> None:
    async with asyncio.timeout(10):
        while len(peer.got) < count:
            await asyncio.sleep(0.01)


async def test_close_writer_sends_the_last_line_then_closes(peer):
    writer = await peer("read")
    writer.write(b"hello\n")
    await close_writer(writer, b"bye\n")
    await _served(peer, 1)
    assert peer.got == [b"hello\nbye\n"]
    assert writer.is_closing()


async def test_close_writer_without_a_last_line_just_closes(peer):
    writer = await peer("read")
    await close_writer(writer, None)
    await _served(peer, 1)
    assert peer.got == [b""] and writer.is_closing()


async def test_close_writer_tolerates_a_reset_peer(peer):
    writer = await peer("reset")
    async with asyncio.timeout(10):
        for _ in range(50):  # write until the RST has arrived and the transport knows
            writer.write(b"x" * 1024)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the reset never reached the writer")
        await close_writer(writer, b"bye\n")  # must not raise
    assert writer.is_closing()


async def test_close_writer_tolerates_an_already_closed_writer(peer):
    writer = await peer("read")
    writer.close()
    await writer.wait_closed()
    await close_writer(writer, b"bye\n")  # writing to a closed transport: ignored
    await _served(peer, 1)
    assert peer.got == [b""]


async def test_close_writer_gives_up_on_a_peer_that_never_reads(peer):
    writer = await peer("stall")
    writer.transport.set_write_buffer_limits(high=1024)
    writer.write(b"x" * (32 << 20))  # far more than both socket buffers: drain cannot finish
    async with asyncio.timeout(10):  # a hang guard: close_writer gives up after 2 x 0.05 s
        await close_writer(writer, b"bye\n", timeout=0.05)
    assert writer.is_closing()
    writer.transport.abort()
