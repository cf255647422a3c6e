"""`[bridge] store` URLs: sqlite:///path or redis[s]://[user:password@]host:port/db, parsed and checked."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["PASSWORD_ENV", "StoreURL", "parse_store_url"]

PASSWORD_ENV = "STRANGER_BRIDGE_REDIS_PASSWORD"  # a Redis password kept out of the config file
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[[0-9A-Fa-f:.]+\]$")
REDIS_PORT = 6379


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL. `password` never appears in `str()`, `repr()` or `redacted()`."""

    scheme: str  # "sqlite" | "redis" | "rediss"
    path: Path | None = None  # sqlite only
    host: str = ""
    port: int = REDIS_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_redis(self) -> bool:
        return self.scheme in ("redis", "rediss")

    def redacted(self) -> str:
        """The URL as logs and messages show it: no password."""
        if not self.is_redis:
            return f"sqlite:///{self.path}"
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.db}"

    def __str__(self) -> str:
        return self.redacted()

    def with_password_from(self, environ: os._Environ[str] | dict[str, str]) -> StoreURL:
        """The password from the environment (PASSWORD_ENV) when it is set, else the URL's own."""
        password = environ.get(PASSWORD_ENV) or self.password
        return StoreURL(self.scheme, self.path, self.host, self.port, self.db, self.username, password)


def parse_store_url(text: str, base_dir: Path | None = None) -> StoreURL:
    """Parse and check a store URL; ValueError says what is wrong (never quoting a password).

    sqlite:///state.sqlite3 is relative to `base_dir` (the config file's folder), sqlite:////var/lib/x
    is absolute. redis://host:port/db: the port defaults to 6379, the db to 0.
    """
    text = text.strip()
    scheme, sep, _ = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("sqlite", "redis", "rediss"):
        raise ValueError("must start with sqlite:///, redis:// or rediss://")
    if scheme == "sqlite":
        rest = text[len("sqlite://"):]
        if not rest.startswith("/") or rest == "/":
            raise ValueError("a SQLite store is sqlite:///relative/path or sqlite:////absolute/path")
        path = Path(unquote(rest[1:]))
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return StoreURL("sqlite", path=path)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    host = _host(parts)
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    db_text = parts.path.strip("/")
    if db_text and not (db_text.isascii() and db_text.isdigit() and len(db_text) <= 9):
        raise ValueError("the database must be a number, 0 or more (redis://host:port/DB)")
    db = int(db_text or 0)
    if parts.query or parts.fragment:
        raise ValueError("takes no ?query or #fragment (the key prefix is [bridge] store_prefix)")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return StoreURL(scheme, host=host, port=port or REDIS_PORT, db=db, username=username, password=password)


def _host(parts: SplitResult) -> str:
    netloc = parts.netloc.rpartition("@")[2]
    host = netloc.rsplit(":", 1)[0] if not netloc.endswith("]") else netloc
    if not host or not _HOST.match(host):
        raise ValueError("needs a host: redis://host:port/db")
    return host.strip("[]")
