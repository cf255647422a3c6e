"""The rich relay on the web platform over raw HTTP: extension events for rich clients, the text
fallback for plain Omegle clients, strict validation of /send, /edit, /delete and /react, limits."""

from __future__ import annotations

import asyncio

from bridge.events import Connected, Edit, Image, Message, Reaction, Retract, Room, Start
from plugins.web.render import PICTURE_NOT_SHOWN
from plugins.web.rich import REACT_BURST, REACT_RATE

from .client import RawClient


async def chatting(bridge, web, http, room_id: str, **params: str) -> tuple[RawClient, Room]:
    """A raw client paired through the hub with a recording room; its web room."""
    rec = bridge.platforms["rec"]
    before = set(web.clients.by_key)
    client = RawClient(http, web.url)
    data = await client.start(**params)
    rec.send(room_id, Start())
    await rec.wait_for(room_id, Connected)
    await client.until("connected")
    (key,) = set(web.clients.by_key) - before
    client.answer = data  # type: ignore[attr-defined]
    return client, Room("web", key)


async def test_a_rich_client_gets_line_ids_edits_deletions_reactions_and_quotes(bridge, web, http):
    client, room = await chatting(bridge, web, http, "x1", rich="1")
    assert client.answer["rich"]["emoji"][0] == "👍" and client.answer["rich"]["images"] is False
    await web.deliver(room, Message("first <b>line</b>", ref="c1"))
    assert await client.until("gotMessage") == ["gotMessage", "first <b>line</b>", {"ref": "s1"}]
    assert await client.post("/send", msg="mine", ref="u1") == (200, "win")
    await web.deliver(room, Message("answer", ref="c2", reply_to="u1", quote="mine"))
    assert await client.until("gotMessage") == ["gotMessage", "answer", {"ref": "s2", "reply": "u1", "quote": "mine"}]
    await web.deliver(room, Edit("s1", "first line, fixed"))
    assert await client.until("edit") == ["edit", "s1", "first line, fixed"]
    await web.deliver(room, Reaction("u1", "🎉"))
    assert await client.until("react") == ["react", "u1", "🎉", True]
    await web.deliver(room, Reaction("u1", "🎉", add=False))
    assert await client.until("react") == ["react", "u1", "🎉", False]
    await web.deliver(room, Retract("s2"))
    assert await client.until("retract") == ["retract", "s2"]
    # a lone extension event is answered at once (it is significant to the page)
    await web.deliver(room, Edit("s1", "again"))
    assert await client.poll() == [["edit", "s1", "again"]]
    # the deleted line can no longer be reacted to or answered
    assert (await client.post("/react", ref="s2", emoji="👍"))[0] == 409
    assert (await client.post("/send", msg="late reply", ref="u2", reply="s2"))[0] == 409


async def test_a_plain_omegle_client_gets_the_text_fallback(bridge, web, http):
    client, room = await chatting(bridge, web, http, "x2")
    assert "rich" not in client.answer
    await web.deliver(room, Message("hello", ref="c1"))
    assert await client.until("gotMessage") == ["gotMessage", "hello"]  # no metadata for a plain client
    await web.deliver(room, Edit("s1", "hello there"))
    assert await client.until("gotMessage") == ["gotMessage", "* corrected: hello there"]
    await web.deliver(room, Reaction("s1", "👍"))
    await web.deliver(room, Retract("s1"))
    await web.deliver(room, Message("re", ref="c2", reply_to="s1", quote="hello there"))
    await web.deliver(room, Message("marker"))
    # reactions and deletions are noise to a text client: nothing came between the edit and the reply
    names = client.names()
    await client.until(lambda e: e == ["gotMessage", "marker"])
    tail = client.events[len(names):] if len(client.events) > len(names) else []
    shown = [e for e in client.events if e[0] == "gotMessage"]
    assert shown[-2:] == [["gotMessage", "> hello there\nre"], ["gotMessage", "marker"]], (shown, tail)
    assert [e for e in client.events if e[0] not in ("gotMessage", "waiting", "connected", "statusInfo", "count")] == []
    # and the extension endpoints refuse a client that never asked for them
    assert (await client.post("/react", ref="s1", emoji="👍"))[0] == 400
    assert (await client.post("/edit", ref="u1", msg="x"))[0] == 400


async def test_rich_requests_are_validated_strictly(bridge, web, http):
    client, room = await chatting(bridge, web, http, "x3", rich="1")
    await web.deliver(room, Message("theirs", ref="c1"))
    await client.until("gotMessage")
    post = client.post
    assert await post("/send", msg="one", ref="u1") == (200, "win")
    assert (await post("/send", msg="dup", ref="u1"))[0] == 409  # a line id is used once
    for bad in ("x", "u0", "u01", "s1", "u" + "9" * 10, "", "u1 ", "ü1"):
        assert (await post("/send", msg="bad", ref=bad))[0] == 400, bad
    assert (await post("/send", msg="r", ref="u2", reply="s9"))[0] == 409  # no such line
    assert (await post("/send", msg="r", ref="u2", reply="<b>"))[0] == 400
    assert (await post("/send", msg="x" * 4001, ref="u2"))[0] == 413
    # edit: own lines only, text required and bounded
    assert await post("/edit", ref="u1", msg="one, edited") == (200, "win")
    assert (await post("/edit", ref="s1", msg="not mine"))[0] == 409
    assert (await post("/edit", ref="u7", msg="unknown"))[0] == 409
    assert (await post("/edit", ref="u1"))[0] == 400
    assert (await post("/edit", ref="u1", msg="   "))[0] == 400
    assert (await post("/edit", ref="u1", msg="x" * 4001))[0] == 413
    assert (await post("/edit", ref="../u1", msg="x"))[0] == 400
    # react: the page's fixed set, add 0 or 1, any live line; a repeat changes nothing
    assert await post("/react", ref="s1", emoji="👍") == (200, "win")
    assert await post("/react", ref="s1", emoji="👍") == (200, "win")
    assert await post("/react", ref="u1", emoji="❤️", add="1") == (200, "win")
    assert await post("/react", ref="u1", emoji="❤️", add="0") == (200, "win")
    assert (await post("/react", ref="s1", emoji="💩"))[0] == 400
    assert (await post("/react", ref="s1", emoji="👍", add="yes"))[0] == 400
    assert (await post("/react", ref="s5", emoji="👍"))[0] == 409
    # delete: own lines only, once; nothing acts on a deleted line
    assert (await post("/delete", ref="s1"))[0] == 409
    assert await post("/delete", ref="u1") == (200, "win")
    assert (await post("/delete", ref="u1"))[0] == 409
    assert (await post("/edit", ref="u1", msg="after"))[0] == 409
    # someone else's id, a forged id, no id
    other = RawClient(http, web.url)
    other.id = "A" * 32
    assert (await other.post("/edit", ref="u1", msg="x"))[0] == 400
    assert (await other.post("/react", ref="s1", emoji="👍"))[0] == 400
    assert (await http.post(web.url + "/delete", data={"ref": "u1"})).status == 400
    # edits of one message are capped
    assert await post("/send", msg="two", ref="u2") == (200, "win")
    codes = [(await post("/edit", ref="u2", msg=f"two v{i}"))[0] for i in range(12)]
    assert codes == [200] * 10 + [429, 429]
    assert web.counted("refused", "rich_throttled") >= 2


async def test_a_reaction_flood_is_throttled_and_loses_no_message(bridge, web, http):
    rec = bridge.platforms["rec"]
    client, room = await chatting(bridge, web, http, "x4", rich="1")
    for i in range(10):
        await web.deliver(room, Message(f"line {i}", ref=f"c{i}"))
    await client.until(lambda e: e[0] == "gotMessage" and e[1] == "line 9")

    async def flood(n: int) -> list[int]:
        codes, on = [], set()  # each request changes something: add where it is not there, else remove
        for k in range(n):
            ref = f"s{1 + k % 10}"
            add = ref not in on
            codes.append((await client.post("/react", ref=ref, emoji="👍", add="1" if add else "0"))[0])
            if codes[-1] == 200:
                on.symmetric_difference_update({ref})
        return codes

    async def talk() -> list[int]:
        codes = []
        for i in range(10):
            codes.append((await client.post("/send", msg=f"token-{i}", ref=f"u{i + 1}"))[0])
            await asyncio.sleep(0)
        return codes

    loop = asyncio.get_running_loop()
    began = loop.time()
    flooded, said = await asyncio.gather(flood(100), talk())
    took = loop.time() - began
    assert said == [200] * 10
    assert all(code in (200, 429) for code in flooded), flooded
    # the bucket's bound, whatever the machine's speed: a burst, then the rate
    assert flooded.count(200) <= REACT_BURST + REACT_RATE * took + 1, (flooded.count(200), took)
    assert 429 in flooded
    got = await rec.wait_count("x4", Message, 10)
    assert [m.text for m in got] == [f"token-{i}" for i in range(10)]


def png(width: int = 3, height: int = 2) -> Image:
    import io

    from PIL import Image as Pil

    out = io.BytesIO()
    Pil.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return Image(out.getvalue(), "image/png", width, height)


async def test_pictures_are_served_from_here_per_client_and_go_with_the_client(http):
    from tests.helpers import running

    from .conftest import web_config

    async with running(web_config(images=True)) as bridge:
        web = bridge.platforms["web"]
        client, room = await chatting(bridge, web, http, "p1", rich="1")
        assert client.answer["rich"]["images"] is True
        picture = png()
        await web.deliver(room, Message("look", ref="c1", image=picture))
        got = await client.until("gotMessage")
        meta = got[2]
        assert meta["ref"] == "s1" and meta["image"]["width"] == 3 and meta["image"]["height"] == 2
        url = meta["image"]["url"]
        assert url.startswith("/image/") and len(url) == len("/image/") + 32
        async with http.get(web.url + url) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "image/png"
            assert response.headers["Cache-Control"] == "private, no-store"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert await response.read() == picture.data
        for wrong in ("/image/" + "A" * 32, "/image/x", url[:-1] + ("A" if url[-1] != "A" else "B")):
            async with http.get(web.url + wrong) as response:
                assert response.status == 404, wrong
        # a deleted line's picture is no longer served; a second one still is
        await web.deliver(room, Message("", ref="c2", image=png(4, 4)))
        second = (await client.until("gotMessage"))[2]["image"]["url"]
        await web.deliver(room, Retract("s1"))
        await client.until("retract")
        async with http.get(web.url + url) as response:
            assert response.status == 404
        async with http.get(web.url + second) as response:
            assert response.status == 200
        # the client leaves: its pictures go with it
        assert await client.post("/disconnect") == (200, "win")
        async with http.get(web.url + second) as response:
            assert response.status == 404
        assert len(web.clients.pictures) == 0


async def test_pictures_off_or_a_plain_client_get_a_notice_instead(bridge, web, http):
    rich, rich_room = await chatting(bridge, web, http, "p2", rich="1")
    await web.deliver(rich_room, Message("with a picture", ref="c1", image=png()))
    assert await rich.until("gotMessage") == ["gotMessage", "with a picture", {"ref": "s1"}]
    assert (await rich.until("serverMessage"))[1] == PICTURE_NOT_SHOWN
    plain_client, plain_room = await chatting(bridge, web, http, "p3")
    await web.deliver(plain_room, Message("", ref="c1", image=png()))
    assert await plain_client.until(lambda e: e[0] in ("gotMessage", "serverMessage")) == ["serverMessage", PICTURE_NOT_SHOWN]
    assert len(web.clients.pictures) == 0


def test_pictures_kept_are_bounded_per_client_and_in_all():
    from plugins.web.pictures import MAX_PER_CLIENT, Pictures

    store = Pictures(max_bytes=10_000, per_client=4_000)
    big = Image(b"x" * 1_500, "image/png", 1, 1)
    urls = [store.keep("a", big, f"s{i}")["url"] for i in range(3)]  # 4,500 bytes: the oldest goes
    assert store.get(urls[0].rsplit("/", 1)[1]) is None and store.get(urls[2].rsplit("/", 1)[1]) is big
    others = [store.keep(key, big)["url"] for key in "bcdef"]  # 10 pictures' worth: the oldest in all go
    assert store.bytes <= 10_000 and store.get(urls[1].rsplit("/", 1)[1]) is None
    assert store.get(others[-1].rsplit("/", 1)[1]) is big
    assert store.keep("g", Image(b"x" * 4_001, "image/png", 1, 1)) is None  # larger than a client may hold
    assert store.keep("g", Image(b"<svg/>", "image/svg+xml", 1, 1)) is None  # not a kind served
    small = Image(b"y", "image/gif", 1, 1)
    for i in range(MAX_PER_CLIENT + 5):
        store.keep("h", small, f"s{i}")
    assert len(store.of_client["h"]) == MAX_PER_CLIENT
    store.drop_line("h", f"s{MAX_PER_CLIENT + 4}")
    assert len(store.of_client["h"]) == MAX_PER_CLIENT - 1
    for key in "abcdefgh":
        store.drop(key)
    assert len(store) == 0 and store.bytes == 0 and not store.of_client and not store.client_bytes
