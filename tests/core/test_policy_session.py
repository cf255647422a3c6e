"""Moderation through the running core: content policy both ways, bans and throttles at start, reports into strikes, honest confirmations."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Disconnected, Message, Reason, Report, Room, ServerNotice, Start, Waiting
from bridge.wording import reason_text
from tests.core.scripted import ScriptedConfig  # noqa: F401 (the plugin path below)
from tests.helpers import RecordingPlatform, running

SCRIPTED = "tests.core.scripted:ScriptedBackend"
SCOPED = "tests.core.test_policy_session:ScopedPlatform"
LISTS = {
    "mask": {"action": "mask", "words": ["shit"]},
    "hold": {"action": "hold", "words": ["kill yourself"]},
    "end": {"action": "end", "words": ["slurword"]},
}


class ScopedPlatform(RecordingPlatform):
    """A recording platform whose rooms named "gNN-..." belong to the guild-like scope "gNN"."""

    def scope_of(self, room: Room) -> str | None:
        head, sep, _ = room.id.partition("-")
        return head if sep else None


def hub(policy=None, **extra):
    return {"backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}}, "policy": {"lists": LISTS, **(policy or {})}, **extra}


def scripted(policy=None):
    return {
        "backends": {"s": {"plugin": SCRIPTED}},
        "bridge": {"default_backend": "s"},
        "policy": {"lists": LISTS, **(policy or {})},
    }


async def pair(rec, a="a", b="b"):
    """Start `a`, then `b`, and wait until both are connected (to each other: nobody else waits)."""
    waiting, connected_a, connected_b = (len(rec.events(r, k)) for r, k in ((a, Waiting), (a, Connected), (b, Connected)))
    rec.send(a, Start())
    await rec.wait_count(a, Waiting, waiting + 1)
    rec.send(b, Start())
    await rec.wait_count(a, Connected, connected_a + 1)
    await rec.wait_count(b, Connected, connected_b + 1)


def notices(rec, room):
    return [e.text for e in rec.events(room, ServerNotice)]


async def test_mask_and_hold_from_the_user_through_the_hub():
    async with running(hub()) as bridge:
        rec = bridge.platforms["rec"]
        await pair(rec)
        rec.send("a", Message("oh ѕһ1t"))
        rec.send("a", Message("please k i l l   y o u r s e l f"))
        rec.send("a", Message("marker-1"))
        await rec.wait_for("b", lambda e: isinstance(e, Message) and e.text == "marker-1")
        assert [e.text for e in rec.events("b", Message)] == ["oh ****", "marker-1"]  # the held one never arrived
        assert "Your message was not sent: it contains words this bridge does not relay." in notices(rec, "a")
        assert notices(rec, "b") == []


async def test_end_from_the_user_ends_the_chat_for_both():
    async with running(hub()) as bridge:
        rec = bridge.platforms["rec"]
        await pair(rec)
        rec.send("a", Message("s.l.u.r.w.o.r.d"))
        ended = await rec.wait_for("a", Disconnected)
        assert ended.reason == Reason.POLICY
        assert reason_text(ended) == "The chat has ended: a message broke this bridge's rules."
        assert (await rec.wait_for("b", Disconnected)).reason == Reason.STRANGER
        assert rec.events("b", Message) == []
        assert "Your message was not sent: it breaks this bridge's rules." in notices(rec, "a")


async def test_stranger_messages_are_checked_with_the_receiving_rooms_rules():
    async with running(scripted()) as bridge:
        rec, backend = bridge.platforms["rec"], bridge.backends["s"]
        rec.send("a", Start())
        chat = await backend.next_chat(0)
        chat.stranger(Connected(), Message("ѕһit happens"), Message("kill yourself"), Message("marker-2"))
        await rec.wait_for("a", lambda e: isinstance(e, Message) and e.text == "marker-2")
        assert [e.text for e in rec.events("a", Message)] == ["**** happens", "marker-2"]
        assert "The stranger sent a message that breaks this bridge's rules; it was not shown." in notices(rec, "a")
        chat.stranger(Message("slurword"))
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.POLICY
        assert chat.closed  # the chat with the stranger was left


async def test_user_messages_to_a_backend_are_checked_too():
    async with running(scripted({"links": "defang"})) as bridge:
        rec, backend = bridge.platforms["rec"], bridge.backends["s"]
        rec.send("a", Start())
        chat = await backend.next_chat(0)
        chat.stranger(Connected())
        await rec.wait_for("a", Connected)
        rec.send("a", Message("see https://evil.example/x"))
        rec.send("a", Message("join discord.gg/abc"))
        rec.send("a", Message("marker-3"))
        async with asyncio.timeout(5):
            while Message("marker-3") not in chat.sent:
                await asyncio.sleep(0.005)
        assert [e.text for e in chat.sent if isinstance(e, Message)] == ["see hxxps://evil[.]example/x", "marker-3"]
        assert "Your message was not sent: Discord invites are not allowed here." in notices(rec, "a")


async def test_scope_rules_override_the_platform():
    data = hub(
        {"platforms": {"rec": {"lists": {"mask": {"action": "hold", "words": ["shit"]}}}},
         "scopes": {"rec:g1": {"lists": {"mask": {"enabled": False}}}}},
        platforms={"rec": {"plugin": SCOPED}},
    )  # fmt: skip
    async with running(data) as bridge:
        rec = bridge.platforms["rec"]
        await pair(rec, "g1-a", "g1-b")  # guild g1 switched the list off: relayed as it is
        rec.send("g1-a", Message("shit"))
        assert (await rec.wait_for("g1-b", Message)).text == "shit"
        rec.send("g1-a", Disconnected())
        await rec.wait_for("g1-b", Disconnected)
        await pair(rec, "g1-a", "x")  # x has the platform's rule (hold), in both directions
        rec.send("g1-a", Message("shit"))
        rec.send("g1-a", Message("marker-4"))
        await rec.wait_for("x", lambda e: isinstance(e, Message) and e.text == "marker-4")
        assert [e.text for e in rec.events("x", Message)] == ["marker-4"]
        assert notices(rec, "x") == ["The stranger sent a message that breaks this bridge's rules; it was not shown."]
        rec.send("x", Message("shit"))
        rec.send("x", Message("marker-5"))
        await rec.wait_for("g1-a", lambda e: isinstance(e, Message) and e.text == "marker-5")
        assert [e.text for e in rec.events("g1-a", Message)] == ["marker-5"]
        assert notices(rec, "x")[-1] == "Your message was not sent: it contains words this bridge does not relay."


async def test_a_banned_user_is_told_with_the_time_left_and_nothing_starts():
    async with running(hub()) as bridge:
        rec = bridge.platforms["rec"]
        await bridge.router.moderator.sanctions.ban("rec/a", 5400, "spam")
        rec.send("a", Start())
        rec.send("a", Message("marker"))  # answered by "not chatting": the start was handled before it
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text)
        assert notices(rec, "a")[0] == "You are banned from starting chats on this bridge for 1 h 30 min more. Reason: spam."
        assert rec.events("a", Waiting) == []


async def test_starting_too_often_is_refused_with_a_notice():
    async with running(hub({"max_starts": 2, "start_window": "1h"})) as bridge:
        rec = bridge.platforms["rec"]
        for _ in range(3):
            rec.send("a", Start())  # the second is "next"; the third is refused and ends nothing
        rec.send("a", Disconnected())
        rec.send("a", Message("marker"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "not chatting" in e.text)
        assert [n for n in notices(rec, "a") if "too quickly" in n] == ["You are starting chats too quickly. Try again in 30 min."]
        assert [e.reason for e in rec.events("a", Disconnected)] == [Reason.USER, Reason.USER]


async def test_reports_in_the_hub_become_a_strike_and_a_ban():
    async with running(hub({"report_threshold": 2})) as bridge:
        rec = bridge.platforms["rec"]
        await pair(rec, "a", "bad")
        rec.send("a", Report())
        assert (await rec.wait_for("a", Disconnected)).reason == Reason.REPORT
        await rec.wait_for("bad", Disconnected)
        await pair(rec, "c", "bad")
        rec.send("c", Report())
        await rec.wait_for("c", Disconnected)
        await rec.wait_count("bad", Disconnected, 2)
        rec.send("bad", Start())
        notice = await rec.wait_for("bad", lambda e: isinstance(e, ServerNotice) and "banned" in e.text)
        assert notice.text.startswith("You are banned from starting chats on this bridge for 1 h more.")
        records = await bridge.router.moderator.sanctions.log_records()
        assert [r.action for r in records][:2] == ["ban", "strike"]
        assert {r.subject for r in records} == {"rec/bad"}
        assert {r.by for r in records if r.action == "report"} == {"rec/a", "rec/c"}


async def test_report_confirmation_is_honest_per_backend():
    async with running(scripted()) as bridge:  # a backend that keeps nobody apart
        rec, backend = bridge.platforms["rec"], bridge.backends["s"]
        rec.send("a", Start())
        chat = await backend.next_chat(0)
        chat.stranger(Connected())
        await rec.wait_for("a", Connected)
        rec.send("a", Report("rude"))
        ended = await rec.wait_for("a", Disconnected)
        assert ended.reason == Reason.REPORT_RECORDED
        assert "not be paired" not in reason_text(ended) and "cannot keep you from meeting them again" in reason_text(ended)
        records = await bridge.router.moderator.sanctions.log_records()
        assert [(r.action, r.subject, r.reason, r.by) for r in records] == [("report", None, "rude", "rec/a")]
        # after the end, too
        rec.send("a", Start())
        chat = await backend.next_chat(1)
        chat.stranger(Connected(), Disconnected())
        await rec.wait_count("a", Disconnected, 2)
        rec.send("a", Report())
        late = await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text.startswith("You reported"))
        assert "not be paired" not in late.text
    async with running(hub()) as bridge:  # the hub does keep them apart
        rec = bridge.platforms["rec"]
        await pair(rec)
        rec.send("b", Disconnected())
        await rec.wait_for("a", Disconnected)
        rec.send("a", Report())
        late = await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and e.text.startswith("You reported"))
        assert late.text == "You reported the last stranger. You will not be paired with them again for 30 days."


async def test_first_message_cooldown_holds_early_messages_with_a_notice():
    async with running(scripted({"first_message_cooldown": "30s"})) as bridge:
        rec, backend = bridge.platforms["rec"], bridge.backends["s"]
        rec.send("a", Start())
        chat = await backend.next_chat(0)
        chat.stranger(Connected())
        await rec.wait_for("a", Connected)
        rec.send("a", Message("buy my stuff"))
        notice = await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "first message" in e.text)
        assert notice.text.startswith("Your message was not sent: wait ") and notice.text.endswith(" before your first message in a new chat.")
        assert [e for e in chat.sent if isinstance(e, Message)] == []  # the notice came after the message was handled
