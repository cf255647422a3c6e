"""Pictures shown to web clients: kept per client under unguessable URLs, served from here, gone with the client."""

from __future__ import annotations

import re
import secrets

from bridge.events import Image

__all__ = ["MAX_PER_CLIENT", "MIME", "PATH", "Pictures"]

MAX_PER_CLIENT = 20  # pictures kept per client; an older one's URL stops answering
MIME = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # what bridge.images re-encodes to
PATH = "/image/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
TOKEN_BYTES = 24  # 192 random bits: the URL is the only thing that names the picture


class Pictures:
    """Every picture a live client may fetch, by token; each client's tokens, oldest first."""

    def __init__(self) -> None:
        self.by_token: dict[str, Image] = {}
        self.of_client: dict[str, list[tuple[str, str | None]]] = {}  # client key -> (token, line id), oldest first

    def keep(self, client_key: str, image: Image, line: str | None = None) -> dict | None:
        """Keep `image` (shown on the client's line `line`); what the page is told of it (url,
        width, height), or None for a kind the platform does not serve."""
        if image.mime not in MIME:
            return None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.by_token[token] = image
        tokens = self.of_client.setdefault(client_key, [])
        tokens.append((token, line))
        while len(tokens) > MAX_PER_CLIENT:
            self.by_token.pop(tokens.pop(0)[0], None)
        return {"url": PATH + token, "width": image.width, "height": image.height}

    def drop_line(self, client_key: str, line: str) -> None:
        """The line was deleted: its picture is no longer served."""
        tokens = self.of_client.get(client_key)
        if tokens:
            for token, _ in [t for t in tokens if t[1] == line]:
                self.by_token.pop(token, None)
            tokens[:] = [t for t in tokens if t[1] != line]

    def get(self, token: str) -> Image | None:
        if not _TOKEN.fullmatch(token):
            return None
        return self.by_token.get(token)

    def drop(self, client_key: str) -> None:
        """The client is gone: so are its pictures."""
        for token, _ in self.of_client.pop(client_key, ()):
            self.by_token.pop(token, None)

    def __len__(self) -> int:
        return len(self.by_token)
