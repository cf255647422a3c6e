"""[platforms.NAME] table of the web platform."""

from __future__ import annotations

from pydantic import Field, field_validator

from bridge.abc import PluginConfig
from bridge.address import split_bind

__all__ = ["WebConfig"]


class WebConfig(PluginConfig):
    """Settings of the Omegle-protocol server and chat page."""

    bind: str = "127.0.0.1:8080"  # host:port ("[::1]:8080" for IPv6); port 0 picks a free one
    poll_window: float = Field(20.0, gt=0, le=300)  # seconds an /events long poll is held before `null`
    client_timeout: float = Field(60.0, gt=0)  # seconds without polling before a client is ended
    cors_origins: tuple[str, ...] = ()  # extra origins allowed to call the API; same origin always is
    # The page's origin as browsers see it ("https://chat.example"). Unset: derived from a loopback
    # bind (http://127.0.0.1:PORT, http://localhost:PORT, http://[::1]:PORT); on other binds the Host
    # header is trusted (set it there: it is what refuses DNS-rebinding pages).
    public_origin: str | None = None
    trusted_proxy_header: str | None = None  # e.g. "X-Forwarded-For"; only behind a proxy that sets it
    max_sessions_per_address: int = Field(32, ge=1)  # live client ids per client address
    max_polls_per_address: int = Field(64, ge=1)  # open /events long polls per client address
    max_body_bytes: int = Field(65536, ge=1024)  # request bodies above this get 413
    max_queue: int = Field(1000, ge=10)  # events kept per client before it is told some were dropped
    max_clients: int = Field(100_000, ge=1)  # live client ids in total
    # Open HTTP connections per client address (not counted behind trusted_proxy_header: the
    # proxy is the peer), and in total (None: the soft descriptor limit minus 64); beyond, closed at once.
    max_connections_per_address: int = Field(128, ge=1)
    max_connections: int | None = Field(None, ge=1)
    header_timeout: float = Field(10.0, gt=0, le=300)  # seconds from connecting to a complete request head
    keepalive_timeout: float = Field(120.0, gt=0, le=3600)  # seconds an idle kept-alive connection stays
    body_timeout: float = Field(10.0, gt=0, le=300)  # seconds to send a request body (408 beyond)
    listen_backlog: int = Field(512, ge=1, le=65535)  # the kernel's listen() queue
    # Per-browser keys (the `sbkey` cookie): the signing secret is replaced every key_rotation_days
    # (a cookie signed with the previous one still counts), and one address network (/24, /48)
    # gets at most new_keys_burst new keys at once, new_keys_per_hour after; beyond, its hashed address.
    key_rotation_days: float = Field(30.0, gt=0, le=3650)
    new_keys_burst: int = Field(5, ge=1)
    new_keys_per_hour: float = Field(5.0, gt=0)
    # Clients without a valid cookie (Omegle-protocol clients) are keyed by their hashed address
    # network, so bans, strikes and report blocks reach them (coarsely: the whole network); pairing
    # still tells them apart by client, so two of them from one network can meet. False: each
    # client id is its own key (no ban or block reaches it past a new id).
    address_keys: bool = True
    # Pictures (rich relay): off by default. On: the page may upload PNG, JPEG, GIF or WebP up to
    # image_max_bytes (decoded and re-encoded by the core, so no metadata crosses), and pictures
    # from strangers are shown blurred until clicked, served from here under a per-client URL.
    images: bool = False
    image_max_bytes: int = Field(2_000_000, ge=1024, le=20_000_000)

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        split_bind(value)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(o) for o in value)

    @field_validator("public_origin")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        return None if value is None else _origin(value)


def _origin(origin: str) -> str:
    if not origin.startswith(("http://", "https://")) or origin.count("/") != 2 or origin.endswith("/"):
        raise ValueError(f"{origin!r}: an origin is scheme://host[:port], no path")
    return origin.lower()

