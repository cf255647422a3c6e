"""Moderation over a real Omegle-protocol chat: the policy both ways, and a report confirmation that promises only what is true."""

from __future__ import annotations

from bridge.events import Connected, Disconnected, Message, Reason, Report, ServerNotice, Start, Waiting
from bridge.wording import reason_text
from tests.helpers import running

from .conftest import omegle
from .stranger import Stranger

POLICY = {"lists": {"m": {"action": "mask", "words": ["shit"]}, "h": {"action": "hold", "words": ["kill yourself"]}}}


async def test_policy_both_ways_and_an_honest_report(server, http):
    async with running({**omegle(server.url), "policy": POLICY}) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        s = await Stranger(http, server.url).start()
        await rec.wait_for("a", Connected)
        await s.wait_for("connected")
        # stranger → user: masked, held (with a notice in the room), then a marker
        assert await s.send("ѕһit happens") == "win"
        assert await s.send("k1ll y0urself") == "win"
        assert await s.send("marker-s") == "win"
        await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "marker-s")
        assert [e.text for e in rec.events("a", Message)] == ["**** happens", "marker-s"]
        assert "The stranger sent a message that breaks this bridge's rules; it was not shown." in [
            e.text for e in rec.events("a", ServerNotice)
        ]
        # user → stranger: the same rules
        rec.send("a", Message("oh shit"))
        rec.send("a", Message("kill yourself"))
        rec.send("a", Message("marker-u"))
        await s.wait_for("gotMessage", "marker-u")
        assert [e[1] for e in s.events if e[0] == "gotMessage"] == ["oh ****", "marker-u"]
        # the report ends the chat and does not promise what this backend cannot do
        rec.send("a", Report())
        ended = await rec.wait_for("a", Disconnected)
        assert ended.reason == Reason.REPORT_RECORDED
        assert reason_text(ended) == (
            "You reported Stranger. The report was recorded, but this stranger service cannot keep you from meeting them again."
        )
        await s.wait_for("strangerDisconnected")
        records = await bridge.router.moderator.sanctions.log_records()
        assert [(r.action, r.subject, r.by) for r in records] == [("report", None, "rec/a")]
        await s.close()
