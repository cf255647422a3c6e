"""Synapse's default rate limits (rc_message 0.2/s, burst 10): bursts merge into events with a marker, none lost."""

from __future__ import annotations

import asyncio
import re

import pytest

from bridge.events import Message
from tests.helpers import running

from .conftest import Matrix, bridge_config, paired
from .synapse import Synapse


@pytest.fixture
async def strict(tmp_path):
    server = Synapse(tmp_path / "strict", relaxed=False)
    server.start()
    m = Matrix(server)
    try:
        yield m
    finally:
        await m.close()
        server.kill()


async def test_default_rate_limits_merge_bursts_without_loss(strict):
    bot = await strict.account()
    alice = await strict.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(strict.server.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg, stranger_rate=1000, stranger_burst=1000, user_rate=1000, user_burst=1000) as b:
        rec = b.platforms["rec"]
        mx = b.platforms["mx"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        sent = [f"t{n:02d}" for n in range(30)]
        for token in sent:  # a chatty stranger: faster than 0.2/s, slow enough to be sent one by one at first
            rec.send("r", Message(f"burst {token}"))
            await asyncio.sleep(0.05)
        await alice.wait_for(lambda: any("t29" in e["content"]["body"] for e in alice.messages(rid, me)), 60)
        events = [e["content"] for e in alice.messages(rid, me)[base:]]
        shown = [t for c in events for t in re.findall(r"\bt\d\d\b", c["body"])]
        assert shown == sent  # every message, once, in order
        assert len(events) < len(sent)  # ... in fewer events than messages
        merged = [c for c in events if "merged into one" in c["body"]]
        assert merged, "no merged event"
        for c in merged:
            marker = re.search(r"(\d+) messages from Stranger were merged into one while delivery was slowed down\.$", c["body"])
            n = int(marker.group(1))
            assert c["body"].startswith("Stranger: burst") and c["body"].count("burst") == n
            assert c["formatted_body"].endswith(f"<i>{marker.group(0)}</i>")
            assert c["m.mentions"] == {} and c["msgtype"] == "m.text"
        assert len(events) - len(merged) >= 3  # the first ones went out one by one, within the burst
        assert mx.stats["limited"] >= 1  # Synapse did answer 429, and nothing was lost
