"""The gateway echo of a line the bridge posted through its own webhook: its id is noted, and it is not parsed into a message."""

from __future__ import annotations

import aiohttp

from bridge.events import Message

from .conftest import bridge
from .util import paired_with_rec, wait_line


async def test_own_webhook_echoes_are_only_noted_other_messages_are_parsed(server):
    async with bridge(server) as b:
        dc, rec = b.platforms["dc"], b.platforms["rec"]
        uid, tid = await paired_with_rec(server, b)
        parsed: list[tuple[bool, str]] = []  # (by a webhook, content) of what discord.py parsed, in order
        on_message = dc.inbound.on_message

        def counting(message):
            parsed.append((message.webhook_id is not None, message.content))
            on_message(message)

        dc.inbound.on_message = counting
        rec.send("w", Message("first stranger line"))
        await wait_line(server, tid, "first stranger line")
        [posted] = [m for m in server.messages[tid] if m["content"] == "first stranger line"]
        # Another webhook of the same channel (not the bridge's) posts in the thread over real HTTP.
        parent = server.channels[tid]["parent_id"]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.api_base}/channels/{parent}/webhooks", json={"name": "someone else"}) as resp:
                other = await resp.json()
            url = f"{server.api_base}/webhooks/{other['id']}/{other['token']}"
            line = {"content": "other hook", "allowed_mentions": {"parse": []}}
            async with http.post(url, params={"thread_id": str(tid), "wait": "true"}, json=line) as resp:
                assert resp.status == 200
        await server.user_message(tid, uid, "marker from the user")  # handed on: parsed after the others
        await rec.wait_for("w", lambda e: isinstance(e, Message) and e.text == "marker from the user")
        # The bridge's own echo never reached it; the other webhook's line and the user's did (the
        # bot's notices are parsed too, as before).
        assert [text for hook, text in parsed if hook] == ["other hook"]
        assert parsed[-1] == (False, "marker from the user")
        assert dc.sender.newest[tid] >= int(posted["id"])
        assert "other hook" not in [e.text for e in rec.events("w", Message)]  # webhook lines are never relayed
