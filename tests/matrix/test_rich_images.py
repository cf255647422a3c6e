"""Images on the real Synapse (platform driven directly): the per-room switch, the stranger's picture
re-uploaded to the homeserver as our own m.image, and a user's picture downloaded (authenticated media)."""

from __future__ import annotations

import io

from nio import UploadResponse
from PIL import Image as PILImage

from bridge.events import Image, Message, Posted

from .conftest import notice_with
from .e2ee import crypto_user, raw_events
from .test_e2ee import bot_events_all_encrypted
from .test_rich_platform import chatting, platform


def png(width: int = 6, height: int = 4, color=(200, 30, 40)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


async def upload(user, data: bytes, mime: str) -> str:
    resp, _ = await user.client.upload(lambda *_: io.BytesIO(data), content_type=mime, filename="x", filesize=len(data))
    assert isinstance(resp, UploadResponse), resp
    return resp.content_uri


async def test_images_are_switched_per_room_and_the_strangers_is_reuploaded(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    async with platform(synapse.url, bot, images=True) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)
        data = png()
        picture = Image(data, "image/png", 6, 4)
        await mx.deliver(room, Message("", ref="c1", image=picture))
        await alice.wait_message(rid, me, notice_with("images are off in this room"))

        await alice.client.room_invite(rid, bob.user_id)
        await bob.client.join(rid)
        await alice.wait_member(rid, bob.user_id, "join")
        await bob.send(rid, "!stranger images on")  # power level 0: refused
        await alice.wait_message(rid, me, notice_with("needs power level 50"))
        assert not mx.media.on(rid)
        await alice.send(rid, "!stranger images on")  # the room's creator
        await alice.wait_message(rid, me, notice_with("Images are on in this room"))
        assert await mx.state.get("image_rooms") == f'["{rid}"]'

        await mx.deliver(room, Message("", ref="c2", image=picture))
        shown = await alice.wait_message(rid, me, lambda c: c.get("msgtype") == "m.image")
        posted = await core.wait(lambda e: isinstance(e, Posted) and e.ref == "c2")
        assert posted.id == shown["event_id"]
        content = shown["content"]
        assert content["info"] == {"mimetype": "image/png", "w": 6, "h": 4, "size": len(data)}
        assert content["m.mentions"] == {} and "formatted_body" not in content
        assert content["url"].startswith("mxc://localhost/")
        got = await mx.media.download(content)
        assert got == data  # the bytes the core handed over, on our homeserver

        await alice.send(rid, "!stranger images off")
        await alice.wait_message(rid, me, notice_with("Images are off in this room"))
        assert not mx.media.on(rid)


async def test_a_users_image_download_is_bounded(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    async with platform(synapse.url, bot, images=True, image_max_bytes=2048) as (mx, core):
        small = png()
        url = await upload(alice, small, "image/png")
        assert await mx.media.download({"url": url}) == small
        big = png(400, 400) + bytes(4096)
        big_url = await upload(alice, big, "image/png")
        assert await mx.media.download({"url": big_url}) is None  # larger than it may be
        assert await mx.media.download({"url": big_url, "info": {"size": 10}}) is None  # a size that lies
        assert await mx.media.download({"url": "https://evil.example/x.png"}) is None
        assert await mx.media.download({"url": "mxc://localhost/../../etc"}) is None
        assert await mx.media.download({"url": "mxc://localhost/doesnotexist"}) is None


async def test_in_an_encrypted_room_images_go_as_encrypted_files_both_ways(matrix, synapse):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    async with platform(synapse.url, bot, images=True) as (mx, core):
        rid, room = await chatting(mx, core, alice, me)  # alice's rooms are encrypted
        await alice.send(rid, "!stranger images on")
        await alice.wait_message(rid, me, notice_with("Images are on in this room"))

        data = png(5, 7)
        await mx.deliver(room, Message("", ref="c1", image=Image(data, "image/png", 5, 7)))
        shown = await alice.wait_message(rid, me, lambda c: c.get("msgtype") == "m.image")
        content = shown["content"]
        assert "url" not in content and content["file"]["url"].startswith("mxc://localhost/")
        assert await mx.media.download(content) == data  # decrypted with the keys in the event
        assert await mx.media.download({"url": content["file"]["url"]}) != data  # the homeserver holds ciphertext
        bot_events_all_encrypted(await raw_events(synapse.url, alice.token, rid), me)

        mine = png(9, 3, (1, 2, 3))
        resp, keys = await alice.client.upload(lambda *_: io.BytesIO(mine), content_type="image/png", filesize=len(mine), encrypt=True)
        assert isinstance(resp, UploadResponse), resp
        sent = await alice.send(rid, {"msgtype": "m.image", "body": "holiday.png", "info": {"mimetype": "image/png", "size": len(mine)},
                                      "file": {"url": resp.content_uri, **keys}})
        got = await core.wait(lambda e: isinstance(e, Message) and e.image is not None)
        assert got.ref == sent and got.text == "" and (got.image.width, got.image.height, got.image.mime) == (9, 3, "image/png")
        assert PILImage.open(io.BytesIO(got.image.data)).getpixel((0, 0)) == (1, 2, 3)
