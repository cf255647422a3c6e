"""Pictures through bridge.images: metadata stripped, bombs refused before decoding, formats sniffed from content."""

import io
import struct
import zlib

import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin

from bridge.config import ImageLimits
from bridge.images import ImageRefused, prepare, reencode, sniff
from tests.helpers import running

GPS = 0x8825
LIMITS = ImageLimits()


def jpeg_with_gps(size=(64, 48)) -> bytes:
    picture = PILImage.new("RGB", size, (200, 30, 30))
    exif = PILImage.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotated 90°, so the output is turned the right way up
    gps = exif.get_ifd(GPS)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 31.0, 12.0), "E", (13.0, 24.0, 36.0)
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


def test_a_jpeg_with_gps_exif_comes_out_without_any_exif_and_upright():
    data = jpeg_with_gps()
    with PILImage.open(io.BytesIO(data)) as before:
        assert before.getexif().get_ifd(GPS)  # the input does carry GPS data
    picture = reencode(data, LIMITS)
    assert picture.mime == "image/jpeg" and (picture.width, picture.height) == (48, 64)
    with PILImage.open(io.BytesIO(picture.data)) as after:
        assert len(after.getexif()) == 0 and not after.getexif().get_ifd(GPS)
        assert "exif" not in after.info and "comment" not in after.info
        assert after.size == (48, 64)
    assert b"PhoneMaker" not in picture.data and b"secret comment" not in picture.data


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny IDAT: nothing large is allocated."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_a_50000_by_50000_png_bomb_is_refused_from_its_header():
    bomb = png_header_only(50_000, 50_000)
    assert len(bomb) < 200
    with pytest.raises(ImageRefused, match="too many pixels"):
        reencode(bomb, LIMITS)
    # also when the operator raised the limit above Pillow's own bomb guard
    with pytest.raises(ImageRefused, match="too many pixels"):
        reencode(bomb, ImageLimits(max_pixels=100_000_000))


def test_the_content_decides_not_the_name_or_the_mime_type():
    data = jpeg_with_gps()
    assert sniff(data) == "JPEG"
    # a JPEG sent as "cat.png" with image/png is read, and leaves, as the JPEG it is
    assert reencode(data, LIMITS).mime == "image/jpeg"
    with pytest.raises(ImageRefused, match="Only PNG, JPEG, GIF and WebP"):
        reencode(b"MZ\x90\x00 an .exe named cat.png", LIMITS)
    with pytest.raises(ImageRefused, match="could not be read"):
        reencode(data[:200], LIMITS)  # truncated: says JPEG, decodes as nothing


def test_svg_is_refused_with_its_reason():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for data in (svg, b"\xef\xbb\xbf  <svg onload='x'/>"):
        with pytest.raises(ImageRefused, match="SVG pictures are not sent"):
            reencode(data, LIMITS)


def test_too_many_bytes_are_refused_before_anything_is_read():
    with pytest.raises(ImageRefused, match="too large"):
        reencode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000, ImageLimits(max_bytes=4096))


def test_png_text_gif_comment_and_webp_are_re_encoded_clean():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "private name")
    out = io.BytesIO()
    PILImage.new("RGBA", (10, 10), (0, 0, 255, 128)).save(out, "PNG", pnginfo=info)
    png = reencode(out.getvalue(), LIMITS)
    assert png.mime == "image/png" and b"private name" not in png.data
    with PILImage.open(io.BytesIO(png.data)) as back:
        assert back.mode == "RGBA" and back.getpixel((1, 1)) == (0, 0, 255, 128)

    frames = [PILImage.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, comment=b"gif secret")
    with PILImage.open(io.BytesIO(out.getvalue())) as source:
        assert source.n_frames == 3 and source.info.get("comment") == b"gif secret"
    gif = reencode(out.getvalue(), LIMITS)
    assert gif.mime == "image/gif" and b"gif secret" not in gif.data
    with PILImage.open(io.BytesIO(gif.data)) as back:
        assert back.n_frames == 3

    out = io.BytesIO()
    PILImage.new("RGB", (12, 9), (1, 2, 3)).save(out, "WEBP", exif=PILImage.Exif().tobytes())
    webp = reencode(out.getvalue(), LIMITS)
    assert (webp.mime, webp.width, webp.height) == ("image/webp", 12, 9)


async def test_prepare_runs_off_the_event_loop_and_gives_the_same_result():
    picture = await prepare(jpeg_with_gps(), LIMITS)
    assert picture.mime == "image/jpeg"


async def test_the_daemon_hands_its_limits_to_every_platform():
    async with running(images={"max_bytes": 2048, "max_pixels": 100}) as b:
        limits = b.platforms["rec"].image_limits
        assert (limits.max_bytes, limits.max_pixels) == (2048, 100)
        with pytest.raises(ImageRefused, match="too many pixels"):
            reencode(png_header_only(20, 20), limits)
