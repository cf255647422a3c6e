"""Three daemons on one Redis: a Matrix room (real Synapse) on one meets a web client on the third, nothing lost either way."""

from __future__ import annotations

import asyncio
import re
import secrets

import aiohttp

from tests.matrix.conftest import matrix, notice_with, synapse
from tests.matrix.test_cross import mx_table
from tests.web.client import RawClient

from .daemon import Daemon, toml_table

__all__ = ["matrix", "synapse"]  # the real Synapse fixtures, used by name

N = 25  # messages each way


MERGED = re.compile(r"(\d+) messages from Stranger were merged into one while delivery was slowed down\.")


def stranger_lines(user, rid: str, me: str) -> list[str]:
    """Each message relayed into the room, in order; a merged event (delivery slowed down) counts as the
    messages it says it merged: "Stranger: a", then "    b" per line, then the marker saying how many."""
    out = []
    for e in user.messages(rid, me):
        if e["content"].get("msgtype") != "m.text":
            continue
        lines = e["content"]["body"].removeprefix("Stranger: ").split("\n")
        said = MERGED.fullmatch(lines[-1])
        if said:
            lines = lines[:-1]
            assert int(said.group(1)) == len(lines), e["content"]["body"]
        out.extend(line.removeprefix("    ") for line in lines)
    return out


async def test_a_matrix_room_on_one_instance_meets_a_web_client_on_a_third(tmp_path, redis_server, matrix, synapse):
    bot = await matrix.account("scalebot")
    alice = await matrix.user("alice")
    me = bot["user_id"]
    mx = Daemon(tmp_path, redis_server.url, "mx", extra=toml_table("platforms.mx", mx_table(synapse.url, bot)))
    mid, far = Daemon(tmp_path, redis_server.url, "mid"), Daemon(tmp_path, redis_server.url, "far")
    try:
        await asyncio.gather(mx.start(), mid.start(), far.start())
        rid = await alice.create_room([me])
        await alice.wait_message(rid, me, notice_with("!stranger start"), 60)
        await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"), 30)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            client = RawClient(http, far.url)  # the web client on the third instance
            await client.start()
            await client.until("connected", timeout=30)
            await alice.wait_message(rid, me, notice_with("You're now chatting"), 30)

            from_web = [f"w{i}-{secrets.token_hex(4)}" for i in range(N)]
            for token in from_web:
                assert await client.post("/send", msg=token) == (200, "win")
            marker = f"marker-{secrets.token_hex(4)}"  # sent after: nothing doubled may come before it
            assert await client.post("/send", msg=marker) == (200, "win")
            await alice.wait_for(lambda: marker in stranger_lines(alice, rid, me), 60)
            assert stranger_lines(alice, rid, me) == [*from_web, marker]  # in order, once each

            from_matrix = [f"m{i}-{secrets.token_hex(4)}" for i in range(N)]
            for token in [*from_matrix, marker]:
                await alice.send(rid, token)
            got = [(await client.until("gotMessage", timeout=60))[1] for _ in range(N + 1)]
            assert got == [*from_matrix, marker]  # delivered == sent, in order, no duplicates
            assert [e for e in client.events if e[0] == "gotMessage"] == [["gotMessage", t] for t in got]

            assert await client.post("/disconnect") == (200, "win")
            await alice.wait_message(rid, me, notice_with("Stranger has disconnected"), 30)
    finally:
        await asyncio.gather(mx.stop(), mid.stop(), far.stop())
