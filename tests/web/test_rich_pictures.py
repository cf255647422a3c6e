"""Pictures from the page (images = true): uploaded raw, re-encoded by the core without metadata,
served to the partner from here; bad files refused with the reason; off by default."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image as Pil
from playwright.async_api import async_playwright, expect

from tests.helpers import running

from .client import RawClient
from .conftest import web_config
from .test_page import FLAGS, chromium

WAIT = 10_000


def jpeg_with_gps() -> bytes:
    picture = Pil.new("RGB", (64, 48), (10, 120, 200))
    exif = Pil.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0), 3: "E", 4: (13.0, 24.0, 0.0)}  # GPS
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif)
    return out.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming width x height pixels, with one tiny data chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def upload(http, web, client: RawClient, data: bytes, ref: str, ctype: str = "image/jpeg") -> tuple[int, str]:
    headers = {"X-Client-ID": client.id or "", "X-Ref": ref, "Content-Type": ctype}
    async with http.post(web.url + "/upload", data=data, headers=headers) as response:
        return response.status, await response.text()


async def test_an_uploaded_picture_reaches_the_partner_re_encoded_without_metadata(http):
    import json

    async with running(web_config(images=True, image_max_bytes=200_000)) as bridge:
        web = bridge.platforms["web"]
        a, b = RawClient(http, web.url), RawClient(http, web.url)
        await a.start(rich="1")
        await b.start(rich="1")
        await a.until("connected")
        await b.until("connected")
        original = jpeg_with_gps()
        assert Pil.open(io.BytesIO(original)).getexif().get(0x010F) == "SecretCam"
        status, body = await upload(http, web, a, original, "u1", ctype="application/octet-stream")  # the name lies
        assert status == 200, body
        mine = json.loads(body)
        assert mine["width"] == 64 and mine["height"] == 48 and mine["url"].startswith("/image/")
        got = await b.until("gotMessage")
        assert got[1] == "" and got[2]["ref"] == "s1"
        theirs = got[2]["image"]
        assert theirs["url"] != mine["url"]  # each client has its own URL
        async with http.get(web.url + theirs["url"]) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
            data = await response.read()
        decoded = Pil.open(io.BytesIO(data))
        assert decoded.size == (64, 48)
        assert not decoded.getexif() and b"SecretCam" not in data  # EXIF and GPS are gone
        # the sender deletes it: the partner's line goes, and so does its picture
        assert await a.post("/delete", ref="u1") == (200, "win")
        assert await b.until("retract") == ["retract", "s1"]
        for url in (theirs["url"], mine["url"]):
            async with http.get(web.url + url) as response:
                assert response.status == 404

        # files that are not sent: the reason comes back, nothing reaches the partner
        svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        status, body = await upload(http, web, a, svg, "u2", ctype="image/png")
        assert status == 415 and "SVG" in body
        status, body = await upload(http, web, a, png_bomb(), "u3", ctype="image/png")
        assert status == 415 and "too many pixels" in body
        status, body = await upload(http, web, a, b"%PDF-1.4 not a picture", "u4")
        assert status == 415 and "Only PNG, JPEG, GIF and WebP" in body
        assert (await upload(http, web, a, b"\xff" * 200_001, "u5"))[0] == 413
        assert (await upload(http, web, a, original, "x1"))[0] == 400  # not a line id
        assert (await upload(http, web, a, original, "u2"))[0] == 409  # a refused upload still used its id
        stranger = RawClient(http, web.url)
        stranger.id = "A" * 32
        assert (await upload(http, web, stranger, original, "u9"))[0] == 400
        assert await a.post("/send", msg="marker", ref="u10") == (200, "win")
        await b.until(lambda e: e[:2] == ["gotMessage", "marker"])
        assert len([e for e in b.events if e[0] == "gotMessage"]) == 2  # the picture and the marker


async def test_pictures_are_off_by_default(web, http):
    client = RawClient(http, web.url)
    data = await client.start(rich="1")
    assert data["rich"]["images"] is False
    assert (await upload(http, web, client, jpeg_with_gps(), "u1"))[0] == 404
    big = b"\xff" * (web.config.max_body_bytes + 1)
    assert (await upload(http, web, client, big, "u1"))[0] == 413  # the ordinary body limit holds


async def test_the_page_sends_a_picture_and_the_partner_sees_it_blurred(http, tmp_path):
    async with running(web_config(images=True)) as bridge:
        web = bridge.platforms["web"]
        picture = tmp_path / "holiday.jpg"
        picture.write_bytes(jpeg_with_gps())
        other = tmp_path / "notes.pdf"
        other.write_bytes(b"%PDF-1.4")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
            try:
                a = await (await browser.new_context()).new_page()
                b = await (await browser.new_context()).new_page()
                for page in (a, b):
                    await page.goto(web.url + "/")
                    await page.click("#stop")
                for page in (a, b):
                    await expect(page.locator("#log")).to_contain_text("You're now chatting", timeout=WAIT)
                await expect(a.locator("#attach")).to_be_visible()
                await a.set_input_files("#picture", str(picture))
                mine = a.locator("#log .line.you .picture img")
                await expect(mine).to_have_count(1, timeout=WAIT)
                await expect(mine).not_to_have_class("blurred")  # your own picture is not hidden from you
                theirs = b.locator("#log .line.stranger .picture img")
                await expect(theirs).to_have_class("blurred", timeout=WAIT)
                assert await theirs.evaluate("(i) => i.complete && i.naturalWidth") == 64
                await expect(b.locator("#log .picture-report")).to_have_count(1)
                # another kind of file is not sent, and the page says so
                await a.set_input_files("#picture", str(other))
                await expect(a.locator("#log")).to_contain_text("Not sent: only PNG, JPEG, GIF and WebP", timeout=WAIT)
                await a.fill("#message", "after the pdf")
                await a.press("#message", "Enter")
                await expect(b.locator("#log .line.stranger .text").last).to_have_text("after the pdf", timeout=WAIT)
                assert await b.locator("#log .line.stranger").count() == 2
            finally:
                await browser.close()
