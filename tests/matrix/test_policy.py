"""Moderation on a real Synapse: a server ban (matrix:*:SERVER) refuses a Matrix user's start, and the room's scope rules apply."""

from __future__ import annotations

from bridge.events import Message, Room, Start
from bridge.policy.subjects import subject_key
from tests.helpers import running

from .conftest import bridge_config

NOTICE = "m.notice"


def is_notice(text: str):
    return lambda c: c.get("msgtype") == NOTICE and text in c.get("body", "")


async def test_a_server_ban_refuses_the_start_and_the_room_scope_applies(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[alice.user_id])
    async with running(cfg) as b:
        me = bot["user_id"]
        room = await alice.create_room([me])
        await alice.wait_member(room, me, "join")
        await alice.wait_message(room, me, is_notice("!stranger start"))
        sanctions = b.router.moderator.sanctions
        await sanctions.ban(subject_key("matrix:*:localhost"), 3600, "spam server")
        await alice.send(room, "!stranger start")
        refused = await alice.wait_message(room, me, is_notice("banned"))
        assert refused["content"]["body"].endswith(
            "You are banned from starting chats on this bridge for 1 h more. Reason: spam server."
        )
        await sanctions.unban("matrix:*:localhost")
        # The room's own rules ([policy.scopes."NAME:!room"]) are looked up by its room id.
        platform = b.platforms["mx"]
        assert platform.scope_of(Room(platform.name, room)) == room
        assert platform.scope_of(Room(platform.name, f"{room}|$root")) == room
        rec = b.platforms["rec"]
        rec.send("w", Start())
        await alice.send(room, "!stranger start")
        await alice.wait_message(room, me, is_notice("You're now chatting"))
        await alice.send(room, "hello after the unban")
        assert (await rec.wait_for("w", Message)).text == "hello after the unban"
