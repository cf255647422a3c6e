"""Images on the real Synapse (platform driven directly): the per-room switch, the stranger's picture
re-uploaded to the homeserver as our own m.image, and a user's picture downloaded (authenticated media)."""

from __future__ import annotations

import io

from nio import UploadResponse
from PIL import Image as PILImage

from bridge.events import Image, Message, Posted

from .conftest import notice_with
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
