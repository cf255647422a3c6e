"""A user's picture attachment: chosen, fetched only from the configured CDN, bounded, and re-encoded by bridge.images."""

from __future__ import annotations

import aiohttp

from bridge.events import Image

from .config import DiscordConfig
from .lines import EXTENSIONS

__all__ = ["Refused", "fetch", "pick"]

CHUNK = 64 * 1024


class Refused(Exception):
    """The picture is not relayed; the text says why, in words for the user."""


def pick(files: list[dict]) -> tuple[dict | None, list[dict]]:
    """The first attachment that says it is a picture, and every other attachment (not sent)."""
    picture = next((f for f in files if (f.get("content_type") or "").split(";")[0].strip() in EXTENSIONS), None)
    return picture, [f for f in files if f is not picture]


async def fetch(session: aiohttp.ClientSession, attachment: dict, config: DiscordConfig) -> Image:
    """Download the attachment (only from under `cdn_base`, at most `image_max_bytes`) and
    re-encode it; what comes out carries no metadata and matches what it says it is."""
    url = str(attachment.get("url") or "")
    base = config.cdn_base.rstrip("/") + "/"
    if not url.startswith(base):
        raise Refused("it is not stored where Discord keeps attachments")
    limit = config.image_max_bytes
    if int(attachment.get("size") or 0) > limit:
        raise Refused(f"it is larger than {limit // 1024} KiB")
    data = bytearray()
    try:
        async with session.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise Refused("Discord did not hand it out")
            async for chunk in resp.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise Refused(f"it is larger than {limit // 1024} KiB")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Refused("it could not be downloaded") from exc
    from bridge import images  # the core's one re-encoder (lands with the rich-relay core)

    try:
        return images.reencode(bytes(data), max_bytes=limit)
    except images.ImageRefused as exc:
        raise Refused(str(exc)) from exc
