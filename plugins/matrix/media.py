"""Images in Matrix rooms (opt-in per platform and per room): the room switch and the re-upload to our homeserver."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from nio import EncryptionError, RoomGetStateResponse, UploadResponse
from nio.crypto.attachments import decrypt_attachment

from bridge.config import ImageLimits
from bridge.events import Image
from bridge.delivery import Permanent

from .moderation import ADMIN_LEVEL, power_level
from .sender import SendFailed

if TYPE_CHECKING:
    from .platform import MatrixPlatform

__all__ = ["Media"]

log = logging.getLogger(__name__)

STATE_KEY = "image_rooms"  # persisted: the rooms whose moderators turned images on
DOWNLOAD = "/_matrix/client/v1/media/download"  # authenticated media (Synapse 1.120 and later)
_MXC = re.compile(r"mxc://([A-Za-z0-9.\-:\[\]]+)/([A-Za-z0-9_\-]+)")
CHUNK = 64 * 1024


class Media:
    """Which rooms take images, and the upload of a stranger's (already re-encoded) picture."""

    def __init__(self, host: MatrixPlatform) -> None:
        self.host = host
        self.rooms: set[str] = set()

    async def load(self) -> None:
        raw = await self.host.state.get(STATE_KEY)
        try:
            self.rooms = {str(r) for r in json.loads(raw)} if raw else set()
        except (ValueError, TypeError):
            log.warning("matrix: the persisted image rooms are unreadable; images are off in every room")

    def on(self, rid: str) -> bool:
        """True when images go both ways in room `rid` (the platform's switch and the room's)."""
        return self.host.cfg.images and rid in self.rooms

    async def switch(self, rid: str, sender: str, arg: str) -> str:
        """`!stranger images on|off`: the answer to show; only a room moderator may change it."""
        if not self.host.cfg.images:
            return "Images are turned off for this bridge; nothing was changed."
        word = arg.strip().lower()
        if word not in ("on", "off"):
            return f"Images are {'on' if rid in self.rooms else 'off'} in this room. Moderators change it with " \
                   f"{self.host.cfg.command_prefix} images on|off."
        if await self._level(rid, sender) < ADMIN_LEVEL:
            return f"Turning images on or off needs power level {ADMIN_LEVEL} in this room; nothing was changed."
        if word == "on":
            self.rooms.add(rid)
        else:
            self.rooms.discard(rid)
        await self.host.state.set(STATE_KEY, json.dumps(sorted(self.rooms)))
        if word == "on":
            return "Images are on in this room: pictures are re-encoded (no metadata) and sent both ways."
        return "Images are off in this room: pictures are not sent either way."

    async def _level(self, rid: str, sender: str) -> int:
        client = self.host.client
        assert client is not None
        resp = await client.room_get_state(rid)
        if not isinstance(resp, RoomGetStateResponse):
            return -1
        found = {ev.get("type"): ev for ev in resp.events if isinstance(ev, dict) and ev.get("state_key") == ""}
        levels = found.get("m.room.power_levels", {}).get("content")
        return power_level(levels if isinstance(levels, dict) else {}, sender, found.get("m.room.create"))

    async def download(self, content: dict[str, Any]) -> bytes | None:
        """The bytes of a user's m.image from the homeserver, or None (no valid mxc:// URL, larger
        than `image_max_bytes`, or the homeserver would not give it). Nothing is decoded here."""
        cfg = self.host.cfg
        file = content.get("file") if isinstance(content.get("file"), dict) else None  # encrypted media
        url = (file or content).get("url")
        found = _MXC.fullmatch(url) if isinstance(url, str) else None
        info = content.get("info") if isinstance(content.get("info"), dict) else {}
        declared = info.get("size")
        if found is None or isinstance(declared, int) and declared > cfg.image_max_bytes:
            return None
        client = self.host.client
        assert client is not None
        url = f"{cfg.homeserver}{DOWNLOAD}/{quote(found.group(1))}/{quote(found.group(2))}"
        headers = {"Authorization": f"Bearer {client.access_token}"}
        timeout = aiohttp.ClientTimeout(total=cfg.request_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    log.info("matrix: a user's image could not be downloaded (HTTP %d)", resp.status)
                    return None
                data = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    data += chunk
                    if len(data) > cfg.image_max_bytes:
                        return None  # the size it declared was not true
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.info("matrix: a user's image could not be downloaded (%s)", type(exc).__name__)
            return None
        return bytes(data) if file is None else _decrypted(bytes(data), file)

    async def fetch(self, content: dict[str, Any]) -> tuple[Image | None, str]:
        """A user's m.image downloaded and re-encoded by bridge.images: (the picture, "") or (None,
        why it was not sent, in words for the user)."""
        from bridge import images  # images are opt-in: a bridge without them never loads the module

        data = await self.download(content)
        if data is None:
            return None, f"it could not be downloaded, or it is larger than {self.host.cfg.image_max_bytes // 1024} KiB."
        try:
            core = self.host.image_limits or ImageLimits()  # [bridge.images], handed in by the daemon
            limits = core.model_copy(update={"max_bytes": min(core.max_bytes, self.host.cfg.image_max_bytes)})
            return await images.prepare(data, limits), ""
        except images.ImageRefused as exc:
            return None, exc.reason

    async def upload(self, image: Image, rid: str) -> dict[str, Any]:
        """Upload a stranger's picture to our homeserver: {"url": its new mxc:// URL} (the sender's URL
        never shows), or in an encrypted room {"file": ...}: encrypted before it leaves, as clients do."""
        client = self.host.client
        assert client is not None
        room = client.rooms.get(rid)
        encrypt = bool(room is not None and room.encrypted and self.host.crypto is not None)
        ext = image.mime.partition("/")[2] or "img"
        try:
            resp, keys = await client.upload(lambda *_: io.BytesIO(image.data), content_type=image.mime,
                                             filename=f"image.{ext}", filesize=len(image.data), encrypt=encrypt)
        except OSError as exc:
            raise SendFailed(type(exc).__name__) from exc
        if isinstance(resp, UploadResponse):
            if encrypt and keys:
                return {"file": {"url": resp.content_uri, **keys}}
            return {"url": resp.content_uri}
        status = str(getattr(resp, "status_code", "") or "")
        if status in ("M_TOO_LARGE", "M_FORBIDDEN"):
            raise Permanent(status)
        raise SendFailed(status or "upload failed")


def _decrypted(data: bytes, file: dict[str, Any]) -> bytes | None:
    """The plaintext of an encrypted attachment (its key, iv and hash from the event), or None."""
    try:
        return decrypt_attachment(data, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    except (KeyError, TypeError, ValueError, EncryptionError):
        log.info("matrix: a user's encrypted image could not be decrypted")
        return None
