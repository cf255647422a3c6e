"""Pictures shown to web clients: kept per client under unguessable URLs, served from here, gone with the client."""

from __future__ import annotations

import re
import secrets

from bridge.events import Image

__all__ = ["MAX_BYTES", "MAX_BYTES_PER_CLIENT", "MAX_PER_CLIENT", "MIME", "PATH", "Pictures"]

MAX_PER_CLIENT = 20  # pictures kept per client; an older one's URL stops answering
MAX_BYTES_PER_CLIENT = 32_000_000  # bytes of pictures kept per client (oldest go first)
MAX_BYTES = 512_000_000  # bytes of pictures kept in all (oldest go first, whoever's they are)
MIME = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # what bridge.images re-encodes to
PATH = "/image/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
TOKEN_BYTES = 24  # 192 random bits: the URL is the only thing that names the picture


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
