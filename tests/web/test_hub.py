"""A web client paired through the hub with a room of another platform (the recording platform)."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Reason, Start, StoppedTyping, Typing

from .client import RawClient


async def test_web_client_and_recording_room_chat_both_ways(bridge, web, http):
    rec = bridge.platforms["rec"]
    client = RawClient(http, web.url)
    await client.start(topics='["Jazz", "tea"]')
    rec.send("r1", Start(interests=("tea",)))
    connected = await rec.wait_for("r1", Connected)
    assert connected.common_interests == ("tea",)
    await client.until("connected")
    assert ["commonLikes", ["tea"]] in client.events
    # web → room
    for i in range(3):
        assert await client.post("/send", msg=f"from web {i} <script>alert(1)</script>") == (200, "win")
    got = await rec.wait_count("r1", Message, 3)
    assert [m.text for m in got] == [f"from web {i} <script>alert(1)</script>" for i in range(3)]
    assert await client.post("/typing") == (200, "win")
    await rec.wait_for("r1", Typing)
    assert await client.post("/stoppedtyping") == (200, "win")
    await rec.wait_for("r1", StoppedTyping)
    # room → web
    rec.send("r1", Typing())
    await client.until("typing")
    rec.send("r1", Message("from the room ✓"))
    assert await client.until("gotMessage") == ["gotMessage", "from the room ✓"]
    rec.send("r1", Disconnected())
    await client.until("strangerDisconnected")
    # the id is dead once the end was fetched
    assert (await client.post("/events"))[0] == 400


async def test_web_disconnect_ends_the_room_chat(bridge, web, http):
    rec = bridge.platforms["rec"]
    rec.send("r2", Start())
    client = RawClient(http, web.url)
    await client.start()
    await rec.wait_for("r2", Connected)
    await client.until("connected")
    assert await client.post("/disconnect") == (200, "win")
    ended = await rec.wait_for("r2", Disconnected)
    assert ended.reason == Reason.STRANGER
    assert (await client.post("/send", msg="late"))[0] == 400
    assert not rec.events("r2", Message)


async def test_client_that_stops_polling_is_ended(http):
    from tests.helpers import running

    from .conftest import web_config

    async with running(web_config(client_timeout=0.5)) as bridge:
        web, rec = bridge.platforms["web"], bridge.platforms["rec"]
        rec.send("r3", Start())
        client = RawClient(http, web.url)
        await client.start()
        await rec.wait_for("r3", Connected)
        # no more polls: the sweeper ends the chat and forgets the id
        ended = await rec.wait_for("r3", Disconnected, timeout=10)
        assert ended.reason == Reason.STRANGER
        assert len(web.clients) == 0
        assert (await client.post("/events"))[0] == 400


async def test_shutdown_tells_a_polling_client_why_its_chat_ended(http):
    import asyncio

    from tests.helpers import running

    from .conftest import web_config

    async with running(web_config(poll_window=10.0)) as bridge:
        web, rec = bridge.platforms["web"], bridge.platforms["rec"]
        rec.send("r4", Start())
        client = RawClient(http, web.url)
        await client.start()
        await rec.wait_for("r4", Connected)
        await client.until("connected")
        poll = asyncio.create_task(client.poll())
        async with asyncio.timeout(5):
            while not web.clients.polls:
                await asyncio.sleep(0.01)
    # leaving the context stopped the bridge while the poll was open
    batch = await asyncio.wait_for(poll, 5)
    assert batch[0] == ["serverMessage", "The bridge is shutting down; this chat has ended."]
    assert batch[-1] == ["strangerDisconnected"]


async def test_events_survive_a_poller_that_vanished(bridge, web, http):
    """A poller that dies mid-poll (a crashed federated bridge) must not swallow the next event."""
    import asyncio

    import aiohttp

    rec = bridge.platforms["rec"]
    rec.send("r9", Start())
    client = RawClient(http, web.url)
    await client.start()
    await rec.wait_for("r9", Connected)
    await client.until("connected")
    # Open a long poll on its own connection, then drop the connection while it waits.
    async with aiohttp.ClientSession() as doomed:
        task = asyncio.create_task(doomed.post(f"{web.url}/events", data={"id": client.id}))
        await asyncio.sleep(0.3)
        task.cancel()
    await asyncio.sleep(0.1)
    rec.send("r9", Message("sent while nobody was listening"))
    got = await client.until("gotMessage")
    assert got == ["gotMessage", "sent while nobody was listening"]
