"""The [platforms.NAME] table of the Matrix platform."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.abc import PluginConfig

__all__ = ["AppserviceConfig", "MatrixConfig"]

_MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_LOCALPART = re.compile(r"^[a-z0-9._=\-/]+$")
_ROOM = re.compile(r"^(![^\s]+|#[^:\s]+:\S+)$")  # room ids of room version 12 have no server part


def _check_room(value: str) -> str:
    if not _ROOM.match(value):
        raise ValueError(f"{value!r}: must be a room id (!id:server) or alias (#name:server)")
    return value


class AppserviceConfig(BaseModel):
    """Ghost mode: an application service registration; each stranger speaks as its own user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registration: Path  # the registration YAML given to the homeserver (as_token, hs_token, ...)
    listen: str = "127.0.0.1:9009"  # host:port where the homeserver pushes transactions
    ghost_prefix: str = "stranger_"  # ghost localparts: <prefix><random>; must be in the namespace

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9009")
        return value

    @field_validator("ghost_prefix")
    @classmethod
    def _ghost_prefix(cls, value: str) -> str:
        if not value or not _LOCALPART.match(value):
            raise ValueError("must be a lowercase Matrix localpart prefix such as stranger_")
        return value


class MatrixConfig(PluginConfig):
    """Settings of one Matrix bot account. Exactly one of access_token / password is required."""

    removed = {
        "allow_media_links": "the option `allow_media_links` was removed: it sent strangers a download link "
                             "on the user's homeserver (its name and the media's id). Delete it; images are "
                             "relayed re-uploaded with `images = true`.",
    }

    homeserver: str  # client-server API base URL, e.g. https://matrix.example.org
    user_id: str  # the bot's mxid, e.g. @strangerbot:example.org
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_id: str | None = None  # keep it stable: Synapse scopes transaction ids per device
    # Who may invite the bot: full mxids ("@alice:example.org") or whole servers (":example.org").
    allowed_inviters: tuple[str, ...] = ()
    command_prefix: str = "!stranger"
    mode: Literal["room", "thread"] = "room"  # thread: each `start` in a shared room opens a thread
    dm_autostart: bool = True  # in a DM, a plain message while idle starts a chat
    # Where a password login keeps its access token and device id (file, mode 0600), so a restart
    # reuses the same device instead of logging in again. None: log in at every start.
    store_path: Path | None = None
    # Ghost mode (optional): with a registration the bot is the application service's sender and
    # events arrive by push instead of /sync; access_token / password are then not used.
    appservice: AppserviceConfig | None = None
    # End-to-end encryption (sync mode; needs matrix-nio[e2e]): join encrypted rooms, decrypt and
    # encrypt. Ghost mode refuses encrypted rooms. The keys live in nio's SQLite store in
    # `crypto_store` (a directory; relative to the working directory, the state directory under
    # systemd); keep it with the login (`device_id` or `store_path`): the store belongs to one device.
    encryption: bool = True
    crypto_store: Path = Path("matrix-crypto")
    # Passphrase the keys in the store are encrypted with (secret; better from the environment).
    # Unset: nio's fixed default, so only the file permissions protect the keys. Keep it: another
    # passphrase cannot open the store (the start then fails, the store is kept).
    crypto_passphrase: SecretStr | None = None
    # "all": encrypt for every device of the room's members, verified or not; "tofu": a member's
    # first devices are trusted, a device that appears later is announced in their chats.
    trust: Literal["all", "tofu"] = "all"
    undecryptable_wait: float = Field(30.0, gt=0, le=3600)  # seconds to wait for a missing key before the room is told
    # Images both ways (PNG, JPEG, GIF, WebP), re-encoded so no metadata crosses: off by default;
    # with true, a room moderator (power level 50) still turns them on per room (`!stranger images on`).
    images: bool = False
    image_max_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)  # a user's image downloaded at most
    ignore_users: tuple[str, ...] = ()  # regexes of mxids whose events are ignored (other bots)
    sync_timeout: float = Field(30.0, gt=0, le=300)  # long-poll seconds per /sync
    request_timeout: float = Field(20.0, gt=0, le=300)  # seconds per ordinary request
    typing_timeout: float = Field(30.0, gt=0, le=300)  # how long a stranger's typing shows without refresh
    merge_budget: int = Field(12000, ge=500, le=30000)  # characters at most in one merged event
    # Tries of one event against timeouts and 5xx (about 30 s with the default 8) before it is
    # given up; lost stranger messages are then counted in one "not delivered" notice.
    send_attempts: int = Field(8, ge=1, le=50)
    # Ended sessions, rooms left and room caches remembered (each kind), e.g. for "next" in the
    # thread of an ended chat; live chats are always kept. Bounds memory over a long uptime.
    remember_rooms: int = Field(10_000, ge=16, le=1_000_000)
    # Moderation. A room id or alias where users with power level >= 50 run !stranger-admin.
    management_room: str | None = None
    policy_rooms: tuple[str, ...] = ()  # policy lists (room ids or aliases) whose m.ban rules are honoured
    mod_log_room: str | None = None  # reports and admin actions are posted here as notices
    mod_log_lines: int = Field(0, ge=0, le=20)  # last chat lines sent with a report (0: none; opt-in)
    max_sessions_per_user: int = Field(3, ge=1, le=100)  # live chats one mxid may have at once

    @field_validator("management_room", "mod_log_room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        return _check_room(value) if value is not None else None

    @field_validator("policy_rooms")
    @classmethod
    def _rooms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _check_room(item)
        return value

    @field_validator("homeserver")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("user_id")
    @classmethod
    def _mxid(cls, value: str) -> str:
        if not _MXID.match(value):
            raise ValueError("must be a full Matrix user id such as @bot:example.org")
        return value

    @field_validator("allowed_inviters")
    @classmethod
    def _inviters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not (item.startswith(":") and len(item) > 1) and not _MXID.match(item):
                raise ValueError(f"{item!r}: use a full mxid (@user:server) or a server as :server")
        return value

    @field_validator("ignore_users")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                re.compile(item)
            except re.error as exc:
                raise ValueError(f"{item!r}: not a regular expression ({exc})") from exc
        return value

    @field_validator("command_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.strip() or any(ch.isspace() for ch in value):
            raise ValueError("must be one word without spaces")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> MatrixConfig:
        if self.appservice is not None:
            if self.access_token is not None or self.password is not None:
                raise ValueError("with appservice, leave out access_token and password (the as_token is used)")
            return self
        if (self.access_token is None) == (self.password is None):
            raise ValueError("set exactly one of access_token or password")
        return self

    def may_invite(self, mxid: str) -> bool:
        """True when `mxid` is allowed to invite the bot (listed, or on a listed server)."""
        server = mxid.partition(":")[2]
        for item in self.allowed_inviters:
            if item == mxid or (item.startswith(":") and server == item[1:]):
                return True
        return False
