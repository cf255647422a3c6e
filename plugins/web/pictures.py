"""Pictures shown to web clients: kept per client under unguessable URLs (in memory, or in Redis for every instance), gone with the client."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
from typing import Any

from aiohttp import web

from bridge.events import Image

from .shared_lua import DROP_PICTURES, KEEP_PICTURE

__all__ = [
    "MAX_BYTES", "MAX_BYTES_PER_CLIENT", "MAX_PER_CLIENT", "MIME", "PATH", "PICTURE_TTL", "Pictures", "SharedPictures", "served",
]  # fmt: skip

log = logging.getLogger(__name__)

MAX_PER_CLIENT = 20  # pictures kept per client; an older one's URL stops answering
MAX_BYTES_PER_CLIENT = 32_000_000  # bytes of pictures kept per client (oldest go first)
MAX_BYTES = 512_000_000  # bytes of pictures kept in all (oldest go first, whoever's they are)
MIME = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # what bridge.images re-encodes to
PATH = "/image/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
TOKEN_BYTES = 24  # 192 random bits: the URL is the only thing that names the picture
PICTURE_TTL = 3600.0  # seconds a picture is kept in Redis at most (a client that ends takes its own at once)


def served(image: Image | None) -> web.Response:
    """The answer to GET /image/TOKEN: the picture (re-encoded by the core, so no metadata), or
    404 for a token that names none (any more)."""
    if image is None:
        return web.Response(status=404, text="gone", content_type="text/plain")
    response = web.Response(body=image.data, content_type=image.mime)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = "inline"
    return response


class Pictures:
    """Every picture a live client may fetch, by token, oldest first; each client's tokens."""

    def __init__(self, *, max_bytes: int = MAX_BYTES, per_client: int = MAX_BYTES_PER_CLIENT) -> None:
        self.max_bytes = max_bytes
        self.per_client = per_client
        self.by_token: dict[str, tuple[str, str | None, Image]] = {}  # token -> (client key, line id, picture)
        self.of_client: dict[str, list[str]] = {}  # client key -> its tokens, oldest first
        self.bytes = 0
        self.client_bytes: dict[str, int] = {}

    def keep(self, client_key: str, image: Image, line: str | None = None) -> dict | None:
        """Keep `image` (shown on the client's line `line`); what the page is told of it (url,
        width, height), or None for a kind the platform does not serve."""
        if image.mime not in MIME or len(image.data) > self.per_client:
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.by_token[token] = (client_key, line, image)
        self.of_client.setdefault(client_key, []).append(token)
        size = len(image.data)
        self.bytes += size
        self.client_bytes[client_key] = self.client_bytes.get(client_key, 0) + size
        tokens = self.of_client[client_key]
        while len(tokens) > MAX_PER_CLIENT or self.client_bytes[client_key] > self.per_client:
            self._forget(tokens[0])
        while self.bytes > self.max_bytes:
            self._forget(next(iter(self.by_token)))
        return {"url": PATH + token, "width": image.width, "height": image.height}

    def _forget(self, token: str) -> None:
        client_key, _, image = self.by_token.pop(token)
        self.bytes -= len(image.data)
        self.client_bytes[client_key] -= len(image.data)
        tokens = self.of_client[client_key]
        tokens.remove(token)
        if not tokens:
            del self.of_client[client_key], self.client_bytes[client_key]

    def get(self, token: str) -> Image | None:
        if not _TOKEN.fullmatch(token):
            return None
        found = self.by_token.get(token)
        return None if found is None else found[2]

    def drop_line(self, client_key: str, line: str) -> None:
        """The line was deleted: its picture is no longer served."""
        for token in [t for t in self.of_client.get(client_key, ()) if self.by_token[t][1] == line]:
            self._forget(token)

    def drop(self, client_key: str) -> None:
        """The client is gone: so are its pictures."""
        for token in list(self.of_client.get(client_key, ())):
            self._forget(token)

    def __len__(self) -> int:
        return len(self.by_token)


class SharedPictures:
    """Pictures in Redis (Redis mode): any instance serves any of them, and the bounds (MAX_PER_CLIENT
    and the bytes per client, whichever instance kept them; MAX_BYTES in all) are kept by one script.

    `keep` answers at once (a new token) and writes in the background; whoever shows the picture's
    URL first awaits `written` for that client, so no URL is shown before its picture can be fetched.
    """

    def __init__(self, redis: Any, prefix: str, *, max_bytes: int = MAX_BYTES, per_client: int = MAX_BYTES_PER_CLIENT) -> None:
        self.redis = redis
        self.prefix = prefix  # the web tier's (`<store prefix>web:<platform>:`)
        self.max_bytes = max_bytes
        self.per_client = per_client
        self._keep = redis.register_script(KEEP_PICTURE)
        self._drop = redis.register_script(DROP_PICTURES)
        self._writes: dict[str, list[asyncio.Task]] = {}  # client key -> its writes in flight, in order

    def _keys(self, client_key: str) -> list[str]:
        return [f"{self.prefix}ic:{client_key}", f"{self.prefix}iall", f"{self.prefix}ibytes"]

    def keep(self, client_key: str, image: Image, line: str | None = None) -> dict | None:
        """As Pictures.keep: the picture as the page is told of it, or None for a kind not served."""
        if image.mime not in MIME or len(image.data) > self.per_client:
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        args = [
            f"{self.prefix}i:", token, len(image.data), line or "", int(PICTURE_TTL * 1000), MAX_PER_CLIENT,
            self.per_client, self.max_bytes, base64.b64encode(image.data).decode("ascii"), image.mime,
        ]  # fmt: skip
        self._run(client_key, self._keep(keys=self._keys(client_key), args=args))
        return {"url": PATH + token, "width": image.width, "height": image.height}

    def drop_line(self, client_key: str, line: str) -> None:
        """The line was deleted: its picture is no longer served (by any instance)."""
        self._run(client_key, self._drop(keys=self._keys(client_key), args=[f"{self.prefix}i:", line]))

    def drop(self, client_key: str) -> None:
        """The client is gone: so are its pictures."""
        self._run(client_key, self._drop(keys=self._keys(client_key), args=[f"{self.prefix}i:", ""]))

    def _run(self, client_key: str, call: Any) -> None:
        writes = self._writes.setdefault(client_key, [])
        previous = writes[-1] if writes else None
        task = asyncio.get_running_loop().create_task(self._after(previous, call))
        writes.append(task)
        task.add_done_callback(lambda done: self._done(client_key, done))

    @staticmethod
    async def _after(previous: asyncio.Task | None, call: Any) -> None:
        if previous is not None:  # one client's writes in the order they were made
            await asyncio.wait([previous])
        try:
            await call
        except Exception as exc:  # Redis away: the picture is not served ("gone"), nothing else fails
            log.info("web: a picture's record in Redis failed (%s)", type(exc).__name__)

    def _done(self, client_key: str, task: asyncio.Task) -> None:
        writes = self._writes.get(client_key)
        if writes is not None and task in writes:
            writes.remove(task)
            if not writes:
                del self._writes[client_key]

    async def written(self, client_key: str) -> None:
        """Wait until the client's pictures kept so far are in Redis (or failed to be)."""
        writes = self._writes.get(client_key)
        if writes:
            await asyncio.wait(list(writes))

    async def fetch(self, token: str) -> Image | None:
        """The picture named `token`, from Redis (None: no such picture, or gone)."""
        if not _TOKEN.fullmatch(token):
            return None
        data, mime = await self.redis.hmget(f"{self.prefix}i:{token}", "d", "m")
        if data is None or mime not in MIME:
            return None
        return Image(base64.b64decode(data), mime, 0, 0)
