"""Memory follows live clients, not churn: ended chats retire their session at once, and what a
later "report" needs is a bounded, expiring record outside any session."""

import asyncio

from bridge.events import Connected, Disconnected, Report, ServerNotice, Start, Waiting
from tests.helpers import RecordingPlatform, running


def hub(**cfg):
    return {"backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, **cfg}}}


async def gone(b, room, timeout=5):
    """Wait until the room has no session (its task retired), then return."""
    async with asyncio.timeout(timeout):
        while room in b.router.sessions:
            task = b.router.sessions[room].task
            if task is not None:
                await asyncio.wait({task}, timeout=0.1)
            else:
                await asyncio.sleep(0.01)


async def pair(rec, x, y):
    rec.send(x, Start())
    rec.send(y, Start())
    await rec.wait_for(x, Connected)
    await rec.wait_for(y, Connected)


async def end_pair(b, rec, who, event):
    """`who` of the pair a, b ends the chat with `event`; wait until both rooms retired."""
    rec.send(who, event)
    for room in "ab":
        await rec.wait_for(room, Disconnected)
        await gone(b, rec.room(room))


async def test_a_room_whose_chat_ended_retires_at_once():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        await pair(rec, "a", "b")
        await end_pair(b, rec, "b", Disconnected())
        assert b.router.sessions == {}
        assert len(b.router.recent) == 2  # both sides may still report


async def test_start_stop_churn_leaves_no_sessions_and_no_records():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        for n in range(1000):  # one address cycling ids, at most 8 live at once
            room = f"churn-{n}"
            rec.send(room, Start())
            await rec.wait_for(room, Waiting)
            rec.send(room, Disconnected())
            if n % 8 == 7:
                await rec.wait_for(room, Disconnected)
                await gone(b, rec.room(f"churn-{n - 7}"))
        await rec.wait_for("churn-999", Disconnected)
        for n in range(1000):
            await gone(b, rec.room(f"churn-{n}"))
        assert b.router.sessions == {}
        assert len(b.router.recent) == 0  # nobody was met: nothing to report
        assert b.backends["hub"].pool.waiting == 0


async def test_report_records_have_a_global_bound_and_expire():
    async with running(hub(), report_records=2, report_window=0.5) as b:
        rec = b.platforms["rec"]
        for x, y in (("a", "b"), ("c", "d"), ("e", "f")):
            await pair(rec, x, y)
            rec.send(y, Disconnected())
            await rec.wait_for(x, Disconnected)
            await rec.wait_for(y, Disconnected)
        assert len(b.router.recent) == 2  # the newest two of six ended chats

        def answer(room):
            return rec.wait_for(room, lambda e: isinstance(e, ServerNotice) and ("report" in e.text))

        rec.send("a", Report())  # evicted by the bound
        assert "no stranger to report" in (await answer("a")).text
        rec.send("e", Report())  # kept
        assert (await answer("e")).text.startswith("You reported the last stranger")
        await asyncio.sleep(0.6)  # f's record is older than the window now
        rec.send("f", Report())
        assert "no stranger to report" in (await answer("f")).text
        assert len(b.router.recent) == 0


async def test_pair_churn_keeps_at_most_the_bound():
    async with running(hub(), report_records=50) as b:
        rec = b.platforms["rec"]
        for n in range(200):
            x, y = f"x{n}", f"y{n}"
            await pair(rec, x, y)
            rec.send(x, Disconnected())
            await rec.wait_for(y, Disconnected)
        for n in range(200):
            await gone(b, rec.room(f"x{n}"))
            await gone(b, rec.room(f"y{n}"))
        assert b.router.sessions == {}
        assert len(b.router.recent) == 50


class NoReportPlatform(RecordingPlatform):
    reports_after_end = False


async def test_a_platform_without_report_after_the_end_keeps_nothing_of_ended_chats():
    data = hub()
    data["platforms"] = {"rec": {"plugin": "tests.helpers:RecordingPlatform"}, "norep": {"plugin": "tests.core.test_churn:NoReportPlatform"}}
    async with running(data) as b:
        rec, norep = b.platforms["rec"], b.platforms["norep"]
        rec.send("a", Start())
        norep.send("w", Start())
        await rec.wait_for("a", Connected)
        await norep.wait_for("w", Connected)
        norep.send("w", Disconnected())
        await rec.wait_for("a", Disconnected)
        await norep.wait_for("w", Disconnected)
        await gone(b, norep.room("w"))
        await gone(b, rec.room("a"))
        assert len(b.router.recent) == 1 and b.router.recent.take(rec.room("a")) is not None


async def test_a_chat_reported_while_live_keeps_no_record():
    async with running(hub()) as b:
        rec = b.platforms["rec"]
        await pair(rec, "a", "b")
        await end_pair(b, rec, "a", Report())
        assert b.router.recent.take(rec.room("a")) is None  # reported once is enough
        assert b.router.recent.take(rec.room("b")) is not None  # b may still report a
