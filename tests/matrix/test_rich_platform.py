"""The Matrix platform's rich relay against the real Synapse: what it hands in for edits, redactions,
reactions and replies, and what it shows for the stranger's, with the platform driven directly."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


from bridge.events import Connected, Edit, Message, Posted, Reaction, Retract, Room, Start
from bridge.store import MemoryStore
from plugins.matrix.config import MatrixConfig
from plugins.matrix.platform import MatrixPlatform
from tests.scratch import scratch_dir

from .conftest import notice_with


class Core:
    """Stands where the core is: records every event the platform hands in, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Room, Any]] = []
        self.changed = asyncio.Event()

    def submit(self, room: Room, event: Any) -> bool:
        self.events.append((room, event))
        self.changed.set()
        return True

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    async def wait(self, test, timeout: float = 20.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for _, event in self.events:
                    if test(event):
                        return event
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def platform(url: str, bot: dict, store: MemoryStore | None = None, **extra: Any):
    login = {"access_token": bot["access_token"], "device_id": bot["device_id"]} if "access_token" in bot else {}
    if "appservice" not in extra:
        extra.setdefault("crypto_store", scratch_dir("sb-crypto-"))  # each run its own key store
    cfg = MatrixConfig(plugin="matrix", homeserver=url, user_id=bot["user_id"], allowed_inviters=[":localhost"],
                       sync_timeout=1.0, request_timeout=10.0, **login, **extra)
    core = Core()
    mx = MatrixPlatform("mx", cfg, core.submit, (store or MemoryStore()).state_for("mx"))
    task = asyncio.get_running_loop().create_task(mx.run())
    try:
        async with asyncio.timeout(30):
            await mx.ready()
        yield mx, core
    finally:
        await mx.flush()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def visible(user, rid: str, sender: str | None = None) -> list[str]:
    """The bodies a Matrix client shows in the room now: edits applied (by their own sender only),
    redacted events gone. In timeline order of the originals."""
    events = user.timeline[rid]
    redacted = {e.get("redacts") or e.get("content", {}).get("redacts") for e in events if e.get("type") == "m.room.redaction"}
    shown: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for e in events:
        if e.get("type") != "m.room.message" or e["event_id"] in redacted:
            continue
        content = e.get("content", {})
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            target = relates.get("event_id")
            if target in shown and shown[target][0] == e["sender"]:
                shown[target] = (e["sender"], content["m.new_content"]["body"])
            continue
        if "body" not in content or content.get("msgtype") == "m.notice":
            continue
        shown[e["event_id"]] = (e["sender"], content["body"])
        order.append(e["event_id"])
    return [shown[i][1] for i in order if i in shown and i not in redacted and (sender is None or shown[i][0] == sender)]


def reactions(user, rid: str, sender: str) -> set[tuple[str, str]]:
    """(target, key) of `sender`'s reactions in the room that were not redacted."""
    events = user.timeline[rid]
    redacted = {e.get("redacts") or e.get("content", {}).get("redacts") for e in events if e.get("type") == "m.room.redaction"}
    return {
        (e["content"]["m.relates_to"]["event_id"], e["content"]["m.relates_to"]["key"])
        for e in events
        if e.get("type") == "m.reaction" and e.get("sender") == sender and e["event_id"] not in redacted
    }


def edit_of(target: str, text: str) -> dict:
    """The content of a user's edit of event `target`, as Element sends it."""
    return {"msgtype": "m.text", "body": f"* {text}", "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


def mine_of(user, rid: str) -> str:
    """The event id of the user's newest message in the room."""
    return [e for e in user.messages(rid, user.user_id)][-1]["event_id"]


async def chatting(mx, core: Core, user, bot_id: str) -> tuple[str, Room]:
    rid = await user.create_room([bot_id])
    await user.wait_message(rid, bot_id, notice_with("!stranger start"))
    await user.send(rid, "!stranger start")
    await core.wait(lambda e: isinstance(e, Start))
    room = Room("mx", rid)
    await mx.deliver(room, Connected())
    await user.wait_message(rid, bot_id, notice_with("You're now chatting"))
    return rid, room


async def test_user_edits_redactions_reactions_and_replies_are_handed_in(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        first = await alice.send(rid, "hello tok1")
        msg = await core.wait(lambda e: isinstance(e, Message) and e.text == "hello tok1")
        assert msg.ref == first and msg.reply_to is None

        await alice.send(rid, edit_of(first, "hello tok1b"))
        assert await core.wait(lambda e: isinstance(e, Edit)) == Edit(first, "hello tok1b")

        reply = await alice.send(rid, {"msgtype": "m.text", "body": f"> <{alice.user_id}> hello tok1\n\nanswer tok2",
                                       "m.relates_to": {"m.in_reply_to": {"event_id": first}}})
        got = await core.wait(lambda e: isinstance(e, Message) and "tok2" in e.text)
        assert got == Message("answer tok2", ref=reply, reply_to=first)

        react = await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "👍"}}, "m.reaction")
        assert await core.wait(lambda e: isinstance(e, Reaction)) == Reaction(first, "👍")
        await alice.client.room_redact(rid, react)
        assert await core.wait(lambda e: isinstance(e, Reaction) and not e.add) == Reaction(first, "👍", add=False)
        await alice.client.room_redact(rid, first)
        assert await core.wait(lambda e: isinstance(e, Retract)) == Retract(first)

        # Somebody else's edit of alice's message is no edit; a later marker proves it was not handed in.
        bob = await matrix.user("bob")
        await alice.client.room_invite(rid, bob.user_id)
        await bob.client.join(rid)
        await alice.wait_member(rid, bob.user_id, "join")
        await bob.send(rid, edit_of(reply, "hijack"))
        await alice.send(rid, "marker tok3")
        await core.wait(lambda e: isinstance(e, Message) and e.text == "marker tok3")
        assert core.of(Edit) == [Edit(first, "hello tok1b")]
        assert core.of(Retract) == [Retract(first)]


async def test_stranger_messages_edits_reactions_replies_and_retractions_are_shown(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        mine = await alice.send(rid, "my line tok0")
        await core.wait(lambda e: isinstance(e, Message) and e.text == "my line tok0")

        await mx.deliver(room, Message("stranger tok1", ref="c1"))
        posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c1")
        line = await alice.wait_message(rid, me, "stranger tok1")
        assert posted.id == line["event_id"]

        await mx.deliver(room, Edit(posted.id, "stranger tok1 fixed"))
        edit = await alice.wait_message(rid, me, lambda c: (c.get("m.relates_to") or {}).get("rel_type") == "m.replace")
        assert edit["content"]["m.relates_to"]["event_id"] == posted.id
        assert edit["content"]["m.new_content"]["body"] == "Stranger: stranger tok1 fixed"
        assert edit["content"]["body"] == "* Stranger: stranger tok1 fixed"
        assert edit["content"]["m.mentions"] == {} and edit["content"]["m.new_content"]["m.mentions"] == {}

        await mx.deliver(room, Reaction(posted.id, "😀"))
        await mx.deliver(room, Reaction(mine, "❤️"))
        await alice.wait_for(lambda: reactions(alice, rid, me) == {(posted.id, "😀"), (mine, "❤️")})
        await mx.deliver(room, Reaction(mine, "❤️", add=False))
        await alice.wait_for(lambda: reactions(alice, rid, me) == {(posted.id, "😀")})

        await mx.deliver(room, Message("reply tok2 @room", ref="c2", reply_to=mine, quote="my line tok0"))
        rep = await alice.wait_message(rid, me, "reply tok2")
        assert rep["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": mine}}
        assert rep["content"]["body"] == "> my line tok0\n\nStranger: reply tok2 @room"
        assert rep["content"]["m.mentions"] == {}
        await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c2" and e.id == rep["event_id"])

        await mx.deliver(room, Message("gone tok3", ref="c3"))
        gone = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c3")
        await mx.deliver(room, Retract(gone.id))
        await mx.deliver(room, Edit(gone.id, "edit after the retraction"))  # an edit racing the retraction loses
        await mx.deliver(room, Message("after tok4", ref="c4"))
        await alice.wait_message(rid, me, "after tok4")
        assert not [e for e in alice.timeline[rid] if (e.get("content", {}).get("m.relates_to") or {}).get("event_id") == gone.id
                    and e.get("type") == "m.room.message"]
        bodies = visible(alice, rid, me)
        assert [b for b in bodies if "tok" in b] == [
            "Stranger: stranger tok1 fixed", "> my line tok0\n\nStranger: reply tok2 @room", "Stranger: after tok4"
        ]
        for e in alice.timeline[rid]:
            if e.get("sender") == me and e.get("type") in ("m.room.message", "m.reaction"):
                assert e["content"].get("m.mentions") == {}, e


async def test_after_a_restart_older_messages_are_read_back_for_edits_reactions_and_redactions(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    store = MemoryStore()
    keys = scratch_dir("sb-crypto-")  # one device, one key store, across both runs
    async with platform(synapse.url, bot, store=store, crypto_store=keys) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        old = await alice.send(rid, "before the restart")
        await core.wait(lambda e: isinstance(e, Message) and e.ref == old)
        await mx.deliver(room, Message("theirs before", ref="c1"))
        theirs = (await core.wait(lambda e: isinstance(e, Posted))).id
    async with platform(synapse.url, bot, store=store, crypto_store=keys) as (mx, core):  # a new run: its maps are empty
        mx.rooms_active([room])
        await alice.send(rid, edit_of(old, "edited after the restart"))
        assert await core.wait(lambda e: isinstance(e, Edit)) == Edit(old, "edited after the restart")
        await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": theirs, "key": "👋"}}, "m.reaction")
        assert await core.wait(lambda e: isinstance(e, Reaction)) == Reaction(theirs, "👋")
        await alice.client.room_redact(rid, theirs)  # alice may redact in her room; the stranger keeps its line
        await alice.client.room_redact(rid, old)
        assert await core.wait(lambda e: isinstance(e, Retract)) == Retract(old)
        assert core.of(Retract) == [Retract(old)]
        # the chat resumed: the stranger edits and deletes lines the previous run posted
        await mx.deliver(room, Message("theirs second", ref="c2"))
        second = (await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c2")).id
    async with platform(synapse.url, bot, store=store, crypto_store=keys) as (mx, core):
        mx.rooms_active([room])
        await mx.deliver(room, Connected())  # (the core shows the resumed chat as live)
        await mx.deliver(room, Edit(second, "theirs second, fixed"))
        edit = await alice.wait_message(rid, me, lambda c: (c.get("m.relates_to") or {}).get("event_id") == second)
        assert edit["content"]["m.new_content"]["body"] == "Stranger: theirs second, fixed"
        await mx.deliver(room, Retract(second))
        await alice.wait_for(lambda: any(e.get("type") == "m.room.redaction" and (e.get("redacts") or e["content"].get("redacts")) == second
                                         for e in alice.timeline[rid]))
        await mx.deliver(room, Retract(mine_of(alice, rid)))  # not a line of ours: nothing is redacted
        await mx.deliver(room, Message("marker", ref="c3"))
        await alice.wait_message(rid, me, "marker")
        redacted = [e for e in alice.timeline[rid] if e.get("type") == "m.room.redaction" and e.get("sender") == me]
        assert len(redacted) == 1
