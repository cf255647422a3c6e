"""Two Discord threads through the hub (issue 13): edits, deletions, reactions, replies and pictures both ways.

The nothing-lost oracle includes edits and deletions: after the scenario, the stranger lines each
thread shows (the fake's stored messages, after edits and deletions) equal what the other side's
user meant to say, in order, each once.
"""

from __future__ import annotations

import asyncio
import io

from plugins.discord.order import REACTIONS_BURST, REACTIONS_PER_SECOND

from .conftest import bridge
from .fakediscord import BOT_ID, FakeDiscord
from .test_admin import admin_user, answer
from .util import notices, open_chat, wait_notice


def visible(server: FakeDiscord, tid: int) -> list[str]:
    """The stranger lines a thread shows now, oldest first."""
    return [m["content"] for m in server.bot_messages(tid) if m["content"] and m.get("webhook_id")]


def line(server: FakeDiscord, tid: int, content: str) -> dict:
    [found] = [m for m in server.bot_messages(tid) if m["content"] == content]
    return found


async def pair(server: FakeDiscord, a: int, b: int, ca: int | None = None, cb: int | None = None) -> tuple[int, int]:
    ta, _ = await open_chat(server, a, ca)
    await wait_notice(server, ta, "Looking for someone")
    tb, _ = await open_chat(server, b, cb or server.text_channels[1])
    await wait_notice(server, ta, "You're now chatting")
    await wait_notice(server, tb, "You're now chatting")
    return ta, tb


async def test_edits_deletions_reactions_replies_both_ways_nothing_lost(server):
    async with bridge(server, keep_open=True) as b:
        alice, bob, carol = server.add_user("alice"), server.add_user("bob"), server.add_user("carol")
        ta, tb = await pair(server, alice, bob)
        a = [await server.user_message(ta, alice, f"a{n}") for n in range(1, 6)]
        bm = [await server.user_message(tb, bob, f"b{n}") for n in range(1, 6)]
        await server.wait_until(lambda: visible(server, tb) == [f"a{n}" for n in range(1, 6)]
                                and visible(server, ta) == [f"b{n}" for n in range(1, 6)])

        await server.user_edit(a[1], "a2 edited")
        await server.user_delete(a[2])
        await server.user_edit(a[4], "a5 edited")  # an edit racing its deletion
        await server.user_delete(a[4])
        await server.user_edit(bm[1], "b2 edited")
        await server.user_delete(bm[4])
        await server.react(tb, int(line(server, tb, "a1")["id"]), bob, "👍")
        await server.react(ta, int(line(server, ta, "b1")["id"]), alice, "🎉")
        await server.user_reply(tb, bob, "b6 answers", line(server, tb, "a4"))
        await server.user_reply(ta, alice, "a6 answers", line(server, ta, "b3"))  # her reply to a stranger line
        # the oracle: each side shows what the other meant, edits and deletions applied, each once;
        # a reply starts with a quote line of the message answered, built from the other side's copy
        want_tb = ["a1", "a2 edited", "a4", "> b3\na6 answers"]
        want_ta = ["b1", "b2 edited", "b3", "b4", "> a4\nb6 answers"]
        await server.wait_until(lambda: visible(server, tb) == want_tb and visible(server, ta) == want_ta, timeout=15)
        # reactions: the bot reacts on the very message the other side reacted to
        await server.wait_until(lambda: server.reactions(ta, int(a[0]["id"])) == {"👍": [BOT_ID]})
        await server.wait_until(lambda: server.reactions(tb, int(bm[0]["id"])) == {"🎉": [BOT_ID]})
        # no Discord id crossed: every stranger line is the other side's words only
        for tid in (ta, tb):
            assert not [v for v in visible(server, tid) if "1200000" in v or "9000000" in v]

        # bob stops; alice's edit after the end is ignored; her next chat (same thread) meets carol
        await server.slash(bob, tb, "stop")
        await wait_notice(server, ta, "Stranger has disconnected.")
        await server.user_edit(a[0], "a1 after the end")
        await server.react(ta, int(line(server, ta, "b2 edited")["id"]), alice, "😀")
        await server.slash(alice, ta, "start")
        tc, _ = await open_chat(server, carol)
        await wait_notice(server, tc, "You're now chatting")
        await server.user_reply(ta, alice, "c1 to an old line", a[3])  # a message of the earlier chat
        await server.user_message(ta, alice, "c2 marker")
        await server.wait_until(lambda: visible(server, tc) == ["c1 to an old line", "c2 marker"])
        assert visible(server, tb) == want_tb  # the late edit never arrived
        assert server.reactions(tb, int(bm[1]["id"])) == {}


async def test_a_hundred_reactions_a_second_are_bounded_and_end_right(server):
    async with bridge(server) as b:
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, tb = await pair(server, alice, bob)
        mine = await server.user_message(ta, alice, "target")
        await server.wait_until(lambda: visible(server, tb) == ["target"])
        shown = int(line(server, tb, "target")["id"])
        began = asyncio.get_running_loop().time()
        for n in range(100):
            await server.react(tb, shown, bob, "👍", add=n % 2 == 0)
        await server.react(tb, shown, bob, "🔥")
        await server.user_message(tb, bob, "marker")
        await server.wait_until(lambda: server.reactions(ta, int(mine["id"])) == {"🔥": [BOT_ID]}, timeout=20)
        elapsed = asyncio.get_running_loop().time() - began
        calls = server.writes(None, rf"^/channels/{ta}/messages/\d+/reactions/")
        assert len(calls) <= REACTIONS_BURST + REACTIONS_PER_SECOND * elapsed + 2
        assert all(c.status == 204 for c in calls)


def jpeg_with_gps() -> bytes:
    from PIL import Image as PILImage

    image = PILImage.new("RGB", (64, 48), (10, 120, 200))
    exif = PILImage.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels but holds almost nothing (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def test_pictures_are_re_encoded_and_uploaded_and_bad_files_refused(server):
    from PIL import Image as PILImage

    async with bridge(server, images=True, cdn_base=server.cdn_base) as b:
        boss = admin_user(server)
        saved = await answer(server, await server.admin(boss, server.text_channels[0], "settings", images=True))
        assert "Relay pictures: yes" in saved["content"]
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, tb = await pair(server, alice, bob)
        original = jpeg_with_gps()
        assert PILImage.open(io.BytesIO(original)).getexif().get(0x8825)  # the input does carry GPS
        files = server.attachments(ta, [("holiday.jpg", "image/jpeg", original)])
        await server.user_message(ta, alice, "my holiday", attachments=files)
        shown = await server.wait_until(lambda: [m for m in server.bot_messages(tb) if m["attachments"]])
        [attachment] = shown[0]["attachments"]
        assert shown[0]["content"] == "my holiday" and "http" not in shown[0]["content"]
        data, ctype = server.cdn[attachment["url"].split("/cdn/", 1)[1]]
        received = PILImage.open(io.BytesIO(data))
        assert received.size == (64, 48) and ctype.startswith("image/")
        assert not received.getexif() and "exif" not in received.info
        assert data != original and b"SpyCam" not in data
        # the receiving side's own upload, never a link to the sender's CDN
        assert attachment["url"].split("/")[-3] == str(tb)
        assert server.cdn_fetches == [files[0]["url"].split("/cdn/", 1)[1]]

        # a "PNG" that is text, an SVG, a picture from elsewhere, a 50,000 x 50,000 PNG bomb:
        # refused with a notice each (saying why), the text still sent
        fake = server.attachments(ta, [("x.png", "image/png", b"<html>not a picture</html>")])
        await server.user_message(ta, alice, "one", attachments=fake)
        svg = server.attachments(ta, [("x.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>")])
        await server.user_message(ta, alice, "two", attachments=svg)
        elsewhere = [{**server.attachments(ta, [("y.png", "image/png", b"x")])[0], "url": "https://evil.example/y.png"}]
        await server.user_message(ta, alice, "three", attachments=elsewhere)
        bomb = server.attachments(ta, [("big.png", "image/png", png_header_only(50_000, 50_000))])
        await server.user_message(ta, alice, "four", attachments=bomb)
        await server.wait_until(lambda: visible(server, tb)[-4:] == ["one", "two", "three", "four"])
        said = notices(server, ta)
        assert [n for n in said if n.startswith("Your picture was not sent")] == [
            "Your picture was not sent to the stranger. Only PNG, JPEG, GIF and WebP pictures can be sent.",
            "Your picture was not sent to the stranger. It is not stored where Discord keeps attachments.",
            "Your picture was not sent to the stranger. The picture has too many pixels (the limit is 16.8 megapixels).",
        ]
        assert [n for n in said if n.startswith("Only pictures")]
        assert len(server.cdn_fetches) == 3  # the one from elsewhere was never fetched
        assert [m for m in server.bot_messages(tb) if m["attachments"]] == shown[:1]

        # a real picture with the wrong name and type: its bytes decide, it is relayed as what it is
        misnamed = server.attachments(ta, [("notes.png", "image/png", original)])
        await server.user_message(ta, alice, "five", attachments=misnamed)
        both = await server.wait_until(lambda: len(p := [m for m in server.bot_messages(tb) if m["attachments"]]) == 2 and p)
        [again] = both[1]["attachments"]
        assert again["content_type"] == "image/jpeg" and again["filename"] == "picture.jpg"


def client_view(events: list[list]) -> list[str]:
    """The stranger lines a rich web client shows after its events: edits applied, deletions removed."""
    lines: dict[str, str] = {}
    for event in events:
        if event[0] == "gotMessage" and len(event) > 2 and "ref" in event[2]:
            lines[event[2]["ref"]] = event[1]
        elif event[0] == "edit" and event[1] in lines:
            lines[event[1]] = event[2]
        elif event[0] == "retract":
            lines.pop(event[1], None)
    return list(lines.values())


async def test_discord_and_a_rich_web_client_edit_delete_react_reply_both_ways(server):
    import aiohttp

    from tests.helpers import running
    from tests.web.client import RawClient

    from .conftest import bridge_config

    cfg = bridge_config(server)
    cfg["platforms"]["web"] = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0, "address_keys": False}
    async with running(cfg) as b, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        web = b.platforms["web"]
        alice = server.add_user("alice")
        ta, _ = await open_chat(server, alice)
        await wait_notice(server, ta, "Looking for someone")
        client = RawClient(http, web.url)
        await client.start(rich="1")
        await client.until("connected")
        await wait_notice(server, ta, "You're now chatting")

        a = [await server.user_message(ta, alice, f"a{n}") for n in range(1, 4)]
        for n in range(1, 4):
            assert await client.post("/send", msg=f"w{n}", ref=f"u{n}") == (200, "win")
        await server.wait_until(lambda: visible(server, ta) == ["w1", "w2", "w3"])
        await client.until(lambda e: e[0] == "gotMessage" and e[1] == "a3")

        # Discord → web: an edit, a deletion, a reaction, a reply
        await server.user_edit(a[1], "a2 edited")
        await server.user_delete(a[2])
        await server.react(ta, int(line(server, ta, "w1")["id"]), alice, "👍")
        await server.user_reply(ta, alice, "a4", line(server, ta, "w2"))
        assert await client.until("react") == ["react", "u1", "👍", True]
        got = await client.until(lambda e: e[0] == "gotMessage" and e[1] == "a4")
        assert got[2]["reply"] == "u2" and got[2]["quote"] == "w2"
        # web → Discord: the same four
        assert (await client.post("/edit", ref="u2", msg="w2 edited"))[0] == 200
        assert (await client.post("/delete", ref="u3"))[0] == 200
        assert (await client.post("/react", ref="s1", emoji="❤️"))[0] == 200
        assert (await client.post("/send", msg="w4", ref="u4", reply="s1")) == (200, "win")
        await server.wait_until(lambda: visible(server, ta) == ["w1", "w2 edited", "> a1\nw4"])
        await server.wait_until(lambda: server.reactions(ta, int(a[0]["id"])) == {"❤️": [BOT_ID]})
        # the nothing-lost oracle, both ways, edits and deletions included
        await client.post("/send", msg="w5", ref="u5")
        await server.user_message(ta, alice, "a5")
        await client.until(lambda e: e[0] == "gotMessage" and e[1] == "a5")
        assert client_view(client.events) == ["a1", "a2 edited", "a4", "a5"]
        await server.wait_until(lambda: visible(server, ta) == ["w1", "w2 edited", "> a1\nw4", "w5"])


async def test_the_bridges_picture_limits_apply_to_discord(server):
    from tests.helpers import running

    from .conftest import bridge_config

    cfg = bridge_config(server, images=True, cdn_base=server.cdn_base)
    async with running(cfg, images={"max_pixels": 1000}) as b:
        assert b.platforms["dc"].image_limits.max_pixels == 1000
        await answer(server, await server.admin(admin_user(server), server.text_channels[0], "settings", images=True))
        alice, bob = server.add_user("alice"), server.add_user("bob")
        ta, tb = await pair(server, alice, bob)
        files = server.attachments(ta, [("big.jpg", "image/jpeg", jpeg_with_gps())])  # 64 x 48: 3,072 pixels
        await server.user_message(ta, alice, "too big here", attachments=files)
        await server.wait_until(lambda: visible(server, tb) == ["too big here"])
        await wait_notice(server, ta, "Your picture was not sent to the stranger. The picture has too many pixels")
        assert not [m for m in server.bot_messages(tb) if m["attachments"]]


async def test_a_discord_picture_reaches_a_rich_web_client_without_its_metadata(server):
    import aiohttp
    from PIL import Image as PILImage

    from tests.helpers import running
    from tests.web.client import RawClient

    from .conftest import bridge_config

    cfg = bridge_config(server, images=True, cdn_base=server.cdn_base)
    cfg["platforms"]["web"] = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0, "address_keys": False,
                               "images": True}
    async with running(cfg) as b, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        web = b.platforms["web"]
        await answer(server, await server.admin(admin_user(server), server.text_channels[0], "settings", images=True))
        alice = server.add_user("alice")
        ta, _ = await open_chat(server, alice)
        await wait_notice(server, ta, "Looking for someone")
        client = RawClient(http, web.url)
        await client.start(rich="1")
        await client.until("connected")
        files = server.attachments(ta, [("gps.jpg", "image/jpeg", jpeg_with_gps())])
        await server.user_message(ta, alice, "from discord", attachments=files)
        got = await client.until(lambda e: e[0] == "gotMessage" and e[1] == "from discord")
        picture = got[2]["image"]
        assert picture["url"].startswith("/image/") and "cdn" not in picture["url"]
        async with http.get(web.url + picture["url"]) as response:
            assert response.status == 200
            data = await response.read()
        received = PILImage.open(io.BytesIO(data))
        assert received.size == (64, 48) and not received.getexif() and b"SpyCam" not in data
