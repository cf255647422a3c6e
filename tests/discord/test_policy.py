"""Moderation on Discord with discord.py against the test server: the guild scope overrides the platform's rules."""

from __future__ import annotations

from bridge.events import Message

from .conftest import bridge_config
from .fakediscord import GUILD_ID
from .util import paired_with_rec, wait_line
from tests.helpers import running

MASK = {"m": {"action": "mask", "words": ["shit"]}}
OFF = {"lists": {"m": {"enabled": False}}}  # the recording room (the stranger's side) has no list


async def test_the_guild_scope_switches_a_list_off_for_the_guild_only(server):
    data = bridge_config(server)
    data["policy"] = {"lists": MASK, "platforms": {"rec": OFF}, "scopes": {f"dc:{GUILD_ID}": OFF}}
    async with running(data) as b:
        rec = b.platforms["rec"]
        uid, tid = await paired_with_rec(server, b)
        await server.user_message(tid, uid, "oh shit")  # the guild's rules, both ways: as it is
        assert (await rec.wait_for("w", Message)).text == "oh shit"
        rec.send("w", Message("shit marker"))
        assert await wait_line(server, tid, "marker") == ("Stranger", "shit marker")


async def test_without_the_scope_the_platform_rules_apply(server):
    data = bridge_config(server)
    data["policy"] = {"lists": MASK, "platforms": {"rec": OFF}}
    async with running(data) as b:
        rec = b.platforms["rec"]
        uid, tid = await paired_with_rec(server, b)
        await server.user_message(tid, uid, "oh shit")  # Discord's rules mask what its user sends
        assert (await rec.wait_for("w", Message)).text == "oh ****"
        rec.send("w", Message("shit marker"))  # ... and what its user is shown
        assert await wait_line(server, tid, "marker") == ("Stranger", "**** marker")
