"""A daemon on Redis restarted under its name after its process was SIGKILLed resumes that process's chats."""

from __future__ import annotations

import asyncio
import json

from bridge.app import Bridge
from bridge.events import Disconnected, Message
from tests.helpers import config
from tests.omegle.conftest import http, omegle, server
from tests.omegle.stranger import Stranger
from tests.store.test_lease import LEASE, kill, start_holder

__all__ = ["http", "server"]  # the omegle fixtures, used by name below


async def test_sigkilled_instance_restarted_under_its_name_resumes_its_chats(redis_server, server, http):
    ours = await Stranger(http, server.url).start()  # the chat the killed process had open
    theirs = await Stranger(http, server.url).start()
    await ours.wait_for("connected")
    await ours.close()  # nobody polls it any more
    handle = json.dumps({"server": server.url, "id": ours.id})
    holder = await start_holder(redis_server.url, "web-1", f"rec:a={handle}")
    other = await start_holder(redis_server.url, "web-2", f"rec:b={handle}")  # another instance's chat
    kill(holder)  # SIGKILL: its lease and its sessions stay in Redis
    data = omegle(server.url)
    data["bridge"].update(store=redis_server.url, store_prefix="sbtest:", instance="web-1", instance_lease=LEASE)
    try:
        async with Bridge(config(data)) as bridge:  # waits out the dead lease, then resumes what web-1 owned
            rec = bridge.platforms["rec"]
            await theirs.send("did you survive?")
            assert (await rec.wait_for("a", Message)).text == "did you survive?"
            rec.send("a", Message("yes, resumed"))
            await theirs.wait_for("gotMessage", "yes, resumed")
            assert rec.events("b") == []  # web-2's chat is not this instance's
            assert [r.room.id for r in await bridge.store.sessions()] == ["a"]
            rec.send("a", Disconnected())
            await theirs.wait_for("strangerDisconnected")
            async with asyncio.timeout(10):  # the ended chat leaves the store
                while await bridge.store.sessions():
                    await asyncio.sleep(0.05)
            assert [r.room.id for r in await bridge.store.sessions_of("web-2")] == ["b"]
    finally:
        kill(other)
        await theirs.close()
