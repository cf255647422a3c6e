"""One test on the server's real clock: the first redraw comes after 30 s, and the sessions live through it."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Disconnected, Message, ServerNotice, Start
from plugins.roulette.backend import NEW_STRANGER
from tests.helpers import running

from .test_backend import cfg


async def test_the_30_s_redraw_is_announced_and_the_chat_goes_on(roulette):
    server = await roulette(rotate=True)  # the real defaults: 30 s epochs, 1 s pings, 7 s pong window
    assert (server.repair_interval, server.ping_interval, server.pong_timeout, server.read_interval) == (30.0, 1.0, 7.0, 0.1)
    rooms = "abcd"
    async with running(cfg(server.port)) as bridge:
        rec = bridge.platforms["rec"]
        for room in rooms:
            rec.send(room, Start())
        for room in rooms:
            await rec.wait_for(room, Connected, timeout=10)
        first = list(server.pairings)
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text == NEW_STRANGER, timeout=45)
        assert server.epoch >= 1 and len(first) == 2  # nothing was redrawn before the first epoch ended
        for room in rooms:
            await rec.wait_for(room, lambda e: isinstance(e, ServerNotice) and e.text == NEW_STRANGER, timeout=5)
            assert len(rec.events(room, Connected)) == 1 and not rec.events(room, Disconnected)
        assert server.deaths == []  # 30 s of pongs on the real 7 s rule
        async with asyncio.timeout(5):  # the new pairs are drawn within about 0.6 s
            while len(server.pairings) < len(first) + 2:
                await asyncio.sleep(0.05)
        rec.send("a", Message("to my new stranger"))
        async with asyncio.timeout(5):
            while not any("to my new stranger" in [m.text for m in rec.events(r, Message)] for r in "bcd"):
                await asyncio.sleep(0.05)
