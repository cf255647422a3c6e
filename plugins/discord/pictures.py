"""A user's picture attachment: chosen, fetched only from the configured CDN, bounded, and re-encoded by bridge.images."""

from __future__ import annotations

import aiohttp

from bridge import images
from bridge.config import ImageLimits
from bridge.events import Image

from .config import DiscordConfig
from .lines import EXTENSIONS

__all__ = ["Refused", "fetch", "pick"]

CHUNK = 64 * 1024


class Refused(Exception):
    """The picture is not relayed; the text says why, in sentences for the user."""


def pick(files: list[dict]) -> tuple[dict | None, list[dict]]:
    """The first attachment that says it is a picture, and every other attachment (not sent)."""
    picture = next((f for f in files if (f.get("content_type") or "").split(";")[0].strip() in EXTENSIONS), None)
    return picture, [f for f in files if f is not picture]


async def fetch(session: aiohttp.ClientSession, attachment: dict, config: DiscordConfig, limits: ImageLimits) -> Image:
    """Download the attachment (only from under `cdn_base`, no redirects, at most
    `image_max_bytes` and the core's `max_bytes`) and re-encode it with bridge.images: what comes
    out carries no metadata and is what its bytes are, whatever name or type came with it."""
    url = str(attachment.get("url") or "")
    if not url.startswith(config.cdn_base.rstrip("/") + "/"):
        raise Refused("It is not stored where Discord keeps attachments.")
    limit = min(config.image_max_bytes, limits.max_bytes)
    too_large = f"The picture is too large (the limit is {limit / 1_000_000:.1f} MB)."
    if int(attachment.get("size") or 0) > limit:
        raise Refused(too_large)
    data = bytearray()
    try:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise Refused("Discord did not hand it out.")
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise Refused(too_large)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Refused("It could not be downloaded.") from exc
    try:
        return await images.prepare(bytes(data), limits)
    except images.ImageRefused as exc:
        raise Refused(exc.reason) from exc
