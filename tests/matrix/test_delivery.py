"""Bounded delivery on a real Synapse: an event the homeserver will not take is given up, counted, and told about."""

from __future__ import annotations

import asyncio

from bridge.events import Message
from tests.helpers import running

from .conftest import bridge_config, paired


def failures(bridge, reason: str) -> int:
    return bridge.metrics.counter("deliver_failures", platform="mx", reason=reason)


async def until(predicate, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_homeserver_away_longer_than_the_retries_one_notice_covers_the_lost_messages(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], send_attempts=2)) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        assert b.metrics.ready["mx"] is True
        await asyncio.to_thread(synapse.kill)
        await until(lambda: b.metrics.ready["mx"] is False)  # /metrics says the platform is away
        rec.send("r", Message("lost-one"))
        await until(lambda: failures(b, "transient") >= 1)
        rec.send("r", Message("lost-two"))
        await until(lambda: failures(b, "transient") >= 2)
        await asyncio.to_thread(synapse.start)
        await until(lambda: b.metrics.ready["mx"] is True, timeout=40)
        rec.send("r", Message("after the outage"))
        await alice.wait_message(rid, me, "Stranger: after the outage", timeout=40)
        shown = [(e["content"]["msgtype"], e["content"]["body"]) for e in alice.messages(rid, me)[base:]]
        assert shown == [
            ("m.notice", "2 messages from the stranger could not be delivered here."),
            ("m.text", "Stranger: after the outage"),
        ]
        assert failures(b, "transient") >= 2  # the two messages (and the notice that failed while Synapse was down)
        # The stranger was told about each of those very messages, once, and about nothing else.
        await b.platforms["mx"].flush()
        assert b.metrics.gauges("queue_depth")[("mx", "outbox")] == 0.0  # the platform's outbox depth is on /metrics
        told = [m.text for m in await rec.wait_count("r", Message, 2, timeout=20)]
        assert told == [
            "[bridge] Your message was not delivered: “lost-one”",
            "[bridge] Your message was not delivered: “lost-two”",
        ]
