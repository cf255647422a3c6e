"""Session churn, web side: ended clients retire at once; only a small bounded record of their end stays."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Disconnected, Start
from plugins.web.clients import Clients

from .client import RawClient


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_churning_clients_leave_nothing_behind(bridge, web, http):
    rec = bridge.platforms["rec"]
    for i in range(40):
        # /start then /disconnect, never more than 8 ids alive
        retired = len(web.clients.retired)
        quitters = [RawClient(http, web.url) for _ in range(8)]
        for c in quitters:
            await c.start(ask=f"question {i}?")
        assert len(web.clients) == 8
        for c in quitters:
            assert await c.post("/disconnect") == (200, "win")
        assert len(web.clients) == 0 and not web.clients.sessions and len(web.clients.retired) == retired
        # a chat the stranger ends while the client is between polls (it never polls again)
        room = f"r{i}"
        rec.send(room, Start())
        client = RawClient(http, web.url)
        await client.start()
        await rec.wait_for(room, Connected)
        rec.send(room, Disconnected())
        await until(lambda: len(web.clients) == 0)  # retired at once, not after client_timeout
        assert not web.clients.sessions and not web.clients.polls
        last = client  # its end waits for one more poll, in a small record
    assert len(web.clients.retired) == 40
    # the core keeps the ended chats of the 40 recording rooms (that platform may report), none of
    # the 360 web rooms' (no web page reports after the end)
    assert len(bridge.router.recent) == 40
    # a retired client's next poll gets its end exactly once; then the id is dead
    batch = await last.poll()
    assert batch is not None and batch[-1] == ["strangerDisconnected"]
    assert "connected" in last.names() and last.names().count("strangerDisconnected") == 1
    assert (await last.post("/events"))[0] == 400
    assert len(web.clients.retired) == 39


def test_retired_records_are_bounded_and_expire():
    clients = Clients(keep_retired=10.0, max_retired=5)
    made = []
    for _ in range(8):
        c = clients.create("203.0.113.1")
        clients.push(c, [["strangerDisconnected"]], force=True)
        c.ended = True
        clients.settle(c)
        made.append(c)
    assert len(clients) == 0 and len(clients.retired) == 5  # the oldest three were dropped
    assert clients.claim(made[0].secret) is None
    assert clients.claim(made[7].secret).events == [["strangerDisconnected"]]
    assert clients.claim(made[7].secret) is None  # shown once
    clients.expire(made[6 - 1].last_seen + 10.0 + 3600)
    assert not clients.retired
