"""Pictures people send: sniffed from their bytes, size-checked before decoding, re-encoded by Pillow without metadata."""

from __future__ import annotations

import asyncio
import io
import warnings

from typing import TYPE_CHECKING

from .config import ImageLimits
from .events import Image

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageRefused", "MIME", "prepare", "reencode", "sniff"]

MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_FRAMES = 200  # frames of an animation at most
FRAME_BUDGET = 2  # an animation may hold this many times max_pixels over all its frames
JPEG_QUALITY = 85
_ANIMATED = ("GIF", "WEBP")
# What of a picture's info is written again: how it is drawn, nothing about where it came from
# (EXIF, GPS, ICC profiles, comments, text chunks, XMP and dpi are left behind).
_KEEP = ("transparency", "duration", "loop", "background")


class ImageRefused(ValueError):
    """A file that is not sent; `reason` is said to its sender as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sniff(data: bytes) -> str | None:
    """The picture format the bytes are (PNG, JPEG, GIF, WEBP), whatever name or MIME type came with them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) or b"<svg" in head


def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def reencode(data: bytes, limits: ImageLimits) -> Image:
    """Decode `data` and encode it anew: EXIF, GPS, comments and every other chunk are left behind.

    Refused (ImageRefused, with a reason for the sender): larger than `limits.max_bytes`, not
    PNG/JPEG/GIF/WebP by its content (SVG named as such), more than `limits.max_pixels` (checked
    from the header, before any pixel is decoded), an over-long animation, or unreadable.
    CPU-bound: call `prepare` from the event loop.
    """
    if len(data) > limits.max_bytes:
        raise ImageRefused(f"The picture is too large ({_megabytes(len(data))}; the limit is {_megabytes(limits.max_bytes)}).")
    kind = sniff(data)
    if kind is None:
        if _looks_like_svg(data):
            raise ImageRefused("SVG pictures are not sent: they are programs as much as pictures.")
        raise ImageRefused("Only PNG, JPEG, GIF and WebP pictures can be sent.")
    # Pillow is imported at the first picture, not at start-up: pictures are off by default,
    # and it is 2 MB of every web server's memory (the issue 5 figure of 2,000 open polls).
    from PIL import Image as PILImage

    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            with PILImage.open(io.BytesIO(data), formats=[kind]) as source:
                return _encode(source, kind, limits)
        except ImageRefused:
            raise
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImageRefused(_too_many_pixels(limits)) from None
        except Exception as exc:  # any decoder failure on untrusted bytes is a refusal, never a crash
            raise ImageRefused("The picture could not be read (the file is damaged or not what it says).") from exc


def _too_many_pixels(limits: ImageLimits) -> str:
    return f"The picture has too many pixels (the limit is {limits.max_pixels / 1_000_000:.1f} megapixels)."


def _strip(picture: PILImage.Image) -> PILImage.Image:
    picture.info = {key: value for key, value in picture.info.items() if key in _KEEP}
    return picture


def _encode(source: PILImage.Image, kind: str, limits: ImageLimits) -> Image:
    width, height = source.size  # read from the header: nothing is decoded yet
    if width < 1 or height < 1 or width * height > limits.max_pixels:
        raise ImageRefused(_too_many_pixels(limits))
    frames = getattr(source, "n_frames", 1) if kind in _ANIMATED else 1
    if frames > MAX_FRAMES or frames * width * height > FRAME_BUDGET * limits.max_pixels:
        raise ImageRefused("The animation is too long to be sent.")
    from PIL import ImageOps, ImageSequence

    out = io.BytesIO()
    if kind == "JPEG":
        picture = ImageOps.exif_transpose(source)  # shown the right way up once its EXIF is gone
        _strip(picture)
        if picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        picture.save(out, "JPEG", quality=JPEG_QUALITY)
        width, height = picture.size
    elif kind == "PNG":
        picture = source if source.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16") else source.convert("RGBA")
        picture.load()
        _strip(picture).save(out, "PNG")  # no pnginfo: text chunks, EXIF and ICC are not written
    elif frames > 1:
        images, durations = [], []
        for frame in ImageSequence.Iterator(source):
            durations.append(frame.info.get("duration", 100))
            images.append(_strip(frame.copy()))
        first = images[0]
        options = {"save_all": True, "append_images": images[1:], "duration": durations, "loop": source.info.get("loop", 0)}
        first.save(out, kind, **({"quality": JPEG_QUALITY} if kind == "WEBP" else {}), **options)
    else:
        source.load()
        picture = source.convert("RGBA") if kind == "WEBP" and source.mode not in ("RGB", "RGBA") else source
        _strip(picture).save(out, kind, **({"quality": JPEG_QUALITY} if kind == "WEBP" else {}))
    encoded = out.getvalue()
    if len(encoded) > limits.max_bytes:
        raise ImageRefused(f"The picture is too large once re-encoded (the limit is {_megabytes(limits.max_bytes)}).")
    return Image(encoded, MIME[kind], width, height)


async def prepare(data: bytes, limits: ImageLimits) -> Image:
    """`reencode` in a worker thread, so a large picture does not stall the event loop."""
    return await asyncio.to_thread(reencode, data, limits)
