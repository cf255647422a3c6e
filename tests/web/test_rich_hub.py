"""The rich relay end to end through the hub: rich raw clients, plain Omegle clients (a raw one and
the PyPI python-omegle) and the no-JS chat, each pair seeing what the other side did."""

from __future__ import annotations

import asyncio

from python_omegle import RandomChat
from python_omegle.chatevent import ChatEvent

from .client import RawClient
from .test_nojs import Stream
from .test_omegle_compat import call, next_event, pointed
from .test_rich_nojs import redrawn


async def pair(http, web, a_params: dict, b_params: dict) -> tuple[RawClient, RawClient]:
    a, b = RawClient(http, web.url), RawClient(http, web.url)
    await a.start(**a_params)
    await b.start(**b_params)
    await a.until("connected")
    await b.until("connected")
    return a, b


def said(client: RawClient) -> list[str]:
    return [e[1] for e in client.events if e[0] == "gotMessage"]


async def test_a_plain_client_sees_the_rich_clients_edits_and_replies_as_text(web, http):
    rich, plain = await pair(http, web, {"rich": "1"}, {})
    assert await plain.post("/send", msg="tok-b1") == (200, "win")
    assert await rich.until("gotMessage") == ["gotMessage", "tok-b1", {"ref": "s1"}]
    assert await rich.post("/send", msg="tok-a1", ref="u1") == (200, "win")
    await plain.until(lambda e: e == ["gotMessage", "tok-a1"])
    assert await rich.post("/edit", ref="u1", msg="tok-a1-fixed") == (200, "win")
    await plain.until(lambda e: e == ["gotMessage", "* corrected: tok-a1-fixed"])
    assert await rich.post("/send", msg="tok-a2", ref="u2", reply="s1") == (200, "win")
    await plain.until(lambda e: e[0] == "gotMessage" and e[1].endswith("tok-a2"))
    assert await rich.post("/react", ref="s1", emoji="👍") == (200, "win")
    assert await rich.post("/delete", ref="u2") == (200, "win")
    assert await rich.post("/send", msg="tok-a3", ref="u3") == (200, "win")
    await plain.until(lambda e: e == ["gotMessage", "tok-a3"])
    # nothing lost, nothing added: the reaction and the deletion are not lines for a text client
    assert said(plain) == ["tok-a1", "* corrected: tok-a1-fixed", "> tok-b1\ntok-a2", "tok-a3"]
    assert not [e for e in plain.events if e[0] in ("edit", "retract", "react") or len(e) > 2]


async def test_python_omegle_sees_an_edit_as_a_corrected_line(web, http):
    omegle = pointed(RandomChat(), web)
    rich = RawClient(http, web.url)
    await call(omegle.start)
    await rich.start(rich="1")
    await next_event(omegle, ChatEvent.CHAT_READY)
    await rich.until("connected")
    assert await rich.post("/send", msg="hello there", ref="u1") == (200, "win")
    assert await next_event(omegle, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "hello there")
    assert await rich.post("/react", ref="u1", emoji="😂") == (200, "win")  # nothing for python-omegle
    assert await rich.post("/edit", ref="u1", msg="hello there, friend") == (200, "win")
    assert await next_event(omegle, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "* corrected: hello there, friend")
    await call(omegle.send, "omegle says hi")
    assert (await rich.until("gotMessage"))[:2] == ["gotMessage", "omegle says hi"]
    await call(omegle.disconnect)
    await rich.until("strangerDisconnected")


async def test_two_rich_clients_see_each_others_edits_deletions_reactions_and_replies(web, http):
    a, b = await pair(http, web, {"rich": "1"}, {"rich": "1"})
    assert await a.post("/send", msg="tok-a1", ref="u1") == (200, "win")
    assert await b.until("gotMessage") == ["gotMessage", "tok-a1", {"ref": "s1"}]
    assert await b.post("/send", msg="tok-b1", ref="u1", reply="s1") == (200, "win")
    got = await a.until("gotMessage")
    assert got[:2] == ["gotMessage", "tok-b1"] and got[2]["ref"] == "s1" and got[2]["reply"] == "u1"
    assert got[2]["quote"] == "tok-a1"
    assert await a.post("/edit", ref="u1", msg="tok-a1-fixed") == (200, "win")
    assert await b.until("edit") == ["edit", "s1", "tok-a1-fixed"]
    assert await a.post("/react", ref="s1", emoji="❤️") == (200, "win")
    assert await b.until("react") == ["react", "u1", "❤️", True]
    assert await a.post("/react", ref="s1", emoji="❤️", add="0") == (200, "win")
    assert await b.until("react") == ["react", "u1", "❤️", False]
    assert await b.post("/delete", ref="u1") == (200, "win")
    assert await a.until("retract") == ["retract", "s1"]
    # an edit racing the deletion it follows: the line stays deleted, the edit is refused here
    assert (await b.post("/edit", ref="u1", msg="too late"))[0] == 409
    assert await b.post("/send", msg="tok-b2", ref="u2") == (200, "win")
    assert (await a.until("gotMessage"))[1] == "tok-b2"
    assert not [e for e in a.events if e[0] == "edit"]
    # after the chat: an edit, a deletion or a reaction acts on nothing
    assert await a.post("/disconnect") == (200, "win")
    await b.until("strangerDisconnected")
    assert (await b.post("/edit", ref="u2", msg="after the end"))[0] == 400
    assert (await a.post("/react", ref="s2", emoji="👍"))[0] == 400


async def test_a_reaction_flood_between_two_pages_is_bounded_and_loses_no_message(web, http):
    a, b = await pair(http, web, {"rich": "1"}, {"rich": "1"})
    assert await b.post("/send", msg="target", ref="u1") == (200, "win")
    await a.until("gotMessage")
    on = False
    accepted = 0
    for k in range(100):
        status, _ = await a.post("/react", ref="s1", emoji="👍", add="0" if on else "1")
        assert status in (200, 429)
        if status == 200:
            on, accepted = not on, accepted + 1
        if k % 10 == 0:
            assert await a.post("/send", msg=f"tok-{k}", ref=f"u{k + 1}") == (200, "win")
    assert await a.post("/send", msg="tok-end", ref="u200") == (200, "win")
    await b.until(lambda e: e[:2] == ["gotMessage", "tok-end"], timeout=20)
    assert [t for t in said(b)] == [f"tok-{k}" for k in range(0, 100, 10)] + ["tok-end"]
    reactions = [e for e in b.events if e[0] == "react"]
    assert len(reactions) <= accepted  # never more than the page let through (the core may cap further)
    # what b saw adds up: the last state it was told is the state a ended in, or an earlier one
    assert all(e[1] == "u1" and e[2] == "👍" for e in reactions)


async def test_a_no_js_user_and_a_rich_client_edit_delete_and_react_both_ways(web, http):
    rich = RawClient(http, web.url)
    await rich.start(rich="1")
    stream = await Stream(http, web.url).start()
    await rich.until("connected")
    await stream.until("now chatting")
    assert await rich.post("/send", msg="tok-r1", ref="u1") == (200, "win")
    await stream.until('id="s1"><b class="who">Stranger:</b> <bdi class="text">tok-r1</bdi>')
    assert (await stream.post(msg="tok-n1"))[0] == 200
    got = await rich.until("gotMessage")
    assert got[:2] == ["gotMessage", "tok-n1"] and got[2]["ref"] == "s1"
    # the rich client edits: the no-JS page redraws with the new text
    assert await rich.post("/edit", ref="u1", msg="tok-r1-fixed") == (200, "win")
    page = await redrawn(stream)
    assert 'tok-r1-fixed</bdi> <small class="edited">(edited)</small>' in page and "tok-r1<" not in page
    # the no-JS form: edit last, react to their last, delete last
    assert (await stream.post(msg="tok-n1-fixed", action="edit"))[0] == 200
    assert await rich.until("edit") == ["edit", "s1", "tok-n1-fixed"]
    await redrawn(stream)
    assert (await stream.post(action="react:👍"))[0] == 200
    assert await rich.until("react") == ["react", "u1", "👍", True]
    await redrawn(stream)
    assert (await stream.post(action="delete"))[0] == 200
    assert await rich.until("retract") == ["retract", "s1"]
    page = await redrawn(stream)
    assert "tok-n1" not in page.split('role="log"', 1)[1]
    # and the rich client deletes: gone from the no-JS screen too
    assert await rich.post("/delete", ref="u1") == (200, "win")
    page = await redrawn(stream)
    assert "tok-r1" not in page.split('role="log"', 1)[1]
    assert page.count("message deleted") == 2
    stream.close()
    await asyncio.wait_for(rich.until("strangerDisconnected"), 15)
