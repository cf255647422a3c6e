"""The rich relay end to end: a Matrix room (real Synapse, matrix-nio users) and a rich raw-HTTP
Omegle-protocol web client, paired through the hub; edits, deletions, reactions and replies both
ways, with a nothing-lost oracle over each side's visible history."""

from __future__ import annotations

import contextlib
import json

import aiohttp

from tests.helpers import running
from tests.scratch import scratch_dir
from tests.web.client import RawClient

from .conftest import notice_with
from .test_cross import HUB, matrix_waiting, mx_table
from .test_rich_platform import edit_of, reactions, visible


def web_history(client: RawClient) -> list[str]:
    """What the web page shows of the stranger's lines: gotMessage by ref, edits applied, retracted gone."""
    shown: dict[str, str] = {}
    order: list[str] = []
    for event in client.events:
        match event:
            case ["gotMessage", text, {"ref": ref, **_rest}]:
                shown[ref] = text
                order.append(ref)
            case ["edit", ref, text] if ref in shown:
                shown[ref] = text
            case ["retract", ref]:
                shown.pop(ref, None)
    return [shown[r] for r in order if r in shown]


def web_reactions(client: RawClient) -> set[tuple[str, str]]:
    held: set[tuple[str, str]] = set()
    for event in client.events:
        if event[0] == "react":
            _, ref, emoji, add = event
            (held.add if add else held.discard)((ref, emoji))
    return held


@contextlib.asynccontextmanager
async def matrix_and_web(matrix, synapse):
    """alice's Matrix room chatting through the hub with a rich raw web client: (alice, bot id, room, client)."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    web = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0}
    mx = {**mx_table(synapse.url, bot), "crypto_store": scratch_dir("sb-crypto-")}
    cfg = {"platforms": {"mx": mx, "web": web}, "backends": HUB}
    async with running(cfg) as b, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        rid = await matrix_waiting(alice, me)
        client = RawClient(http, b.platforms["web"].url)
        await client.start(rich="1")
        await client.until("connected")
        await alice.wait_message(rid, me, notice_with("You're now chatting"))
        yield alice, me, rid, client


async def test_matrix_room_and_rich_web_client_relay_edits_deletions_reactions_and_replies(matrix, synapse):
    async with matrix_and_web(matrix, synapse) as (alice, me, rid, client):

        # Matrix → web: three lines, the first edited, the second deleted, a reaction, a reply
        m1 = await alice.send(rid, "m1 tok")
        got1 = await client.until("gotMessage")
        assert got1[1] == "m1 tok"
        s1 = got1[2]["ref"]
        m2 = await alice.send(rid, "m2 tok")
        s2 = (await client.until("gotMessage"))[2]["ref"]
        await alice.send(rid, edit_of(m1, "m1 tok fixed"))
        assert await client.until("edit") == ["edit", s1, "m1 tok fixed"]
        await alice.client.room_redact(rid, m2)
        assert await client.until("retract") == ["retract", s2]

        # web → Matrix: lines with the client's own ids; an edit, a deletion, a reaction, a reply
        assert await client.post("/send", msg="w1 tok", ref="u1") == (200, "win")
        w1 = await alice.wait_message(rid, me, "w1 tok")
        assert await client.post("/send", msg="w2 tok", ref="u2") == (200, "win")
        w2 = await alice.wait_message(rid, me, "w2 tok")
        assert await client.post("/edit", ref="u1", msg="w1 tok fixed") == (200, "win")
        edit = await alice.wait_message(rid, me, lambda c: (c.get("m.relates_to") or {}).get("rel_type") == "m.replace")
        assert edit["content"]["m.relates_to"]["event_id"] == w1["event_id"]
        assert edit["content"]["m.new_content"] == {**edit["content"]["m.new_content"], "body": "Stranger: w1 tok fixed", "m.mentions": {}}
        assert await client.post("/delete", ref="u2") == (200, "win")
        assert await client.post("/react", ref=s1, emoji="👍") == (200, "win")
        assert await client.post("/send", msg="w3 answer", ref="u3", reply=s1) == (200, "win")
        w3 = await alice.wait_message(rid, me, "w3 answer")
        assert w3["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": m1}}
        assert w3["content"]["body"].startswith("> m1 tok fixed\n\n")
        await alice.wait_for(lambda: reactions(alice, rid, me) == {(m1, "👍")})
        await alice.wait_for(lambda: any(e.get("type") == "m.room.redaction" and (e.get("redacts") or e["content"].get("redacts")) == w2["event_id"]
                                         for e in alice.timeline[rid]))

        # Matrix → web: a reaction to the stranger's line and a reply to it
        await alice.send(rid, {"m.relates_to": {"rel_type": "m.annotation", "event_id": w1["event_id"], "key": "❤️"}}, "m.reaction")
        assert await client.until("react") == ["react", "u1", "❤️", True]
        await alice.send(rid, {"msgtype": "m.text", "body": "> <@x:localhost> w1\n\nm3 reply tok",
                               "m.relates_to": {"m.in_reply_to": {"event_id": w1["event_id"]}}})
        got3 = await client.until("gotMessage")
        assert got3[1] == "m3 reply tok" and got3[2]["reply"] == "u1" and got3[2]["quote"] == "w1 tok fixed"

        # the oracle: each side shows exactly what the other meant, in order, nothing lost or doubled
        assert web_history(client) == ["m1 tok fixed", "m3 reply tok"]
        assert web_reactions(client) == {("u1", "❤️")}
        bodies = [b for b in visible(alice, rid, me) if "tok" in b or "answer" in b]
        assert bodies == ["Stranger: w1 tok fixed", "> m1 tok fixed\n\nStranger: w3 answer"]
        for e in alice.timeline[rid]:
            if e.get("sender") == me and e.get("type") in ("m.room.message", "m.reaction"):
                assert e["content"].get("m.mentions") == {}, e
        # no Matrix event id (nor the room, nor alice) reached the web client; no web id reached Matrix
        seen_by_web = json.dumps(client.events, ensure_ascii=False)
        for secret in [e["event_id"] for e in alice.timeline[rid]] + [rid, alice.user_id]:
            assert secret not in seen_by_web, secret
        for e in alice.timeline[rid]:
            if e.get("sender") == me:
                assert client.id not in json.dumps(e), e


async def test_an_earlier_chats_messages_are_neither_edited_nor_quoted_in_the_next(matrix, synapse):
    async with matrix_and_web(matrix, synapse) as (alice, me, rid, first):
        old = await alice.send(rid, "old tok")
        assert (await first.until("gotMessage"))[1] == "old tok"
        assert await first.post("/disconnect") == (200, "win")
        await alice.wait_message(rid, me, notice_with("Stranger has disconnected"))
        await alice.send(rid, edit_of(old, "edited after the end"))  # the chat ended: ignored

        await alice.send(rid, "!stranger start")
        await alice.wait_message(rid, me, notice_with("Looking for someone"))
        second = RawClient(first.http, first.url)
        await second.start(rich="1")
        await second.until("connected")
        await alice.send(rid, {"msgtype": "m.text", "body": "> <@x:localhost> old tok\n\nnew reply tok",
                               "m.relates_to": {"m.in_reply_to": {"event_id": old}}})
        got = await second.until("gotMessage")
        assert got[1] == "new reply tok" and "reply" not in got[2] and "quote" not in got[2]
        await alice.send(rid, edit_of(old, "edited in the next chat"))  # a ref of the earlier chat
        await alice.client.room_redact(rid, old)
        await alice.send(rid, "marker tok")
        assert (await second.until("gotMessage"))[1] == "marker tok"
        assert [e for e in second.events if e[0] in ("edit", "retract", "react")] == []
        assert [e for e in first.events if e[0] in ("edit", "retract")] == []
        texts = [e[1] for e in first.events + second.events if e[0] == "gotMessage"]
        assert not [t for t in texts if "edited" in t]


async def test_an_edit_racing_a_deletion_leaves_the_line_deleted_on_both_sides(matrix, synapse):
    async with matrix_and_web(matrix, synapse) as (alice, me, rid, client):
        # Matrix: an edit and the redaction sent back to back, without waiting for either
        mine = await alice.send(rid, "racing tok1")
        await client.until("gotMessage")
        await alice.send(rid, edit_of(mine, "racing tok1 edited"))
        await alice.client.room_redact(rid, mine)
        await alice.send(rid, "kept tok2")
        await client.until(lambda e: e[0] == "gotMessage" and e[1] == "kept tok2")
        assert web_history(client) == ["kept tok2"]
        # web: a line, its edit and its deletion in one go, then a marker
        assert await client.post("/send", msg="w racing tok3", ref="u1") == (200, "win")
        assert await client.post("/edit", ref="u1", msg="w racing tok3 edited") == (200, "win")
        assert await client.post("/delete", ref="u1") == (200, "win")
        assert await client.post("/send", msg="w kept tok4", ref="u2") == (200, "win")
        await alice.wait_message(rid, me, "w kept tok4")

        def settled():
            return [b for b in visible(alice, rid, me) if "tok" in b] == ["Stranger: w kept tok4"]

        await alice.wait_for(settled)
