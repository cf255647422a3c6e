"""Images end to end: two Matrix rooms paired through the hub, images on in both. A JPEG with GPS
EXIF arrives re-encoded without it, under our own new mxc:// URL; a wrong MIME type, a file and a
video are not sent, each with a notice."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from tests.helpers import running
from tests.scratch import scratch_dir

from .conftest import notice_with
from .test_cross import HUB, matrix_waiting, mx_table
from .test_rich_images import upload

GPS_IFD = 0x8825


def jpeg_with_gps() -> bytes:
    img = PILImage.new("RGB", (32, 24), (10, 120, 200))
    exif = PILImage.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    data = out.getvalue()
    assert PILImage.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD), "the test image carries no GPS data"
    return data


async def test_images_between_two_matrix_rooms_are_reencoded_and_reuploaded(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    table = {**mx_table(synapse.url, bot), "crypto_store": scratch_dir("sb-crypto-"), "images": True}
    cfg = {"platforms": {"mx": table}, "backends": HUB}
    async with running(cfg) as b:
        mx = b.platforms["mx"]
        ra = await matrix_waiting(alice, me)
        await alice.send(ra, "!stranger images on")
        await alice.wait_message(ra, me, notice_with("Images are on"))
        rb = await matrix_waiting(bob, me)
        await bob.send(rb, "!stranger images on")
        await bob.wait_message(rb, me, notice_with("Images are on"))
        await alice.wait_message(ra, me, notice_with("You're now chatting"))
        await bob.wait_message(rb, me, notice_with("You're now chatting"))

        data = jpeg_with_gps()
        url = await upload(alice, data, "image/jpeg")
        await alice.send(ra, {"msgtype": "m.image", "body": "IMG_2024_home.jpg", "url": url,
                              "info": {"mimetype": "image/jpeg", "size": len(data), "w": 32, "h": 24}})
        shown = await bob.wait_message(rb, me, lambda c: c.get("msgtype") == "m.image")
        content = shown["content"]
        assert content["url"] != url and content["url"].startswith("mxc://localhost/")
        assert "IMG_2024_home" not in str(content) and content["m.mentions"] == {}
        got = await mx.media.download(content)
        assert got is not None and got != data
        picture = PILImage.open(io.BytesIO(got))
        assert picture.size == (32, 24)
        assert not picture.getexif().get_ifd(GPS_IFD) and 0x010F not in picture.getexif()
        assert b"SecretCam" not in got

        # not a picture at all, though it says image/png; a file; a video: nothing crosses, each is told
        fake = await upload(alice, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png")
        await alice.send(ra, {"msgtype": "m.image", "body": "x.png", "url": fake, "info": {"mimetype": "image/png"}})
        await alice.wait_message(ra, me, notice_with("image was not sent"))
        await alice.send(ra, {"msgtype": "m.file", "body": "a.pdf", "url": fake})
        await alice.send(ra, {"msgtype": "m.video", "body": "a.mp4", "url": fake})
        await alice.send(ra, "marker tok")
        await bob.wait_message(rb, me, "marker tok")
        assert len([e for e in bob.messages(rb, me) if e["content"].get("msgtype") == "m.image"]) == 1
        told = [e for e in alice.messages(ra, me) if "media is not sent" in e["content"].get("body", "")]
        assert len(told) == 2
