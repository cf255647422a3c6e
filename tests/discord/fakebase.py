"""What the Discord-compatible test server is made of: ids, constants, recorded requests, faults, JSON answers."""

from __future__ import annotations

import email.policy
import itertools
import json
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver

__all__ = [
    "ADMINISTRATOR",
    "ALL_REQUESTS",
    "APP_ID",
    "BODY",
    "BOT_ID",
    "DISCORD_EPOCH_MS",
    "FILES",
    "Fault",
    "GUILD_ID",
    "GatewaySession",
    "MANAGE_GUILD",
    "MEMBER_PERMISSIONS",
    "OWNER_ID",
    "Recorded",
    "RefusingResolver",
    "SEND_MESSAGES",
    "guarded_connector",
    "json_answer",
    "shard_of",
    "multipart",
    "now_iso",
    "snowflake",
    "user_object",
]

BODY = web.RequestKey("body", object)
FILES = web.RequestKey("files", list)  # (field name, filename, content type, bytes) of a multipart request
# Every request any FakeDiscord of this test process answered: the allowed_mentions audit reads it.
ALL_REQUESTS: list[Recorded] = []

DISCORD_EPOCH_MS = 1420070400000
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
SEND_MESSAGES = 1 << 11
MEMBER_PERMISSIONS = 2248473465835073  # what an ordinary member may do: no Manage Server, no Administrator
BOT_ID = 900000000000000001
APP_ID = 900000000000000002
GUILD_ID = 900000000000000100
OWNER_ID = 900000000000000003
_ids = itertools.count(1_200_000_000_000_000_000)


def snowflake() -> int:
    return next(_ids)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class RefusingResolver(AbstractResolver):
    """Resolves no host name at all: a call that escapes the redirection to 127.0.0.1 fails."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        raise OSError(f"test guard: refusing to resolve {host!r}")

    async def close(self) -> None:
        pass


def guarded_connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(resolver=RefusingResolver(), limit=0)


@dataclass
class Recorded:
    method: str
    path: str  # without /api/v10
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int = 0
    at: float = field(default_factory=time.perf_counter)  # when the request reached the server
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # multipart uploads


def multipart(content_type: str, raw: bytes) -> tuple[Any, list[tuple[str, str, str, bytes]]]:
    """A multipart/form-data body as discord.py sends it: "payload_json" and "files[N]" parts."""
    parsed = BytesParser(policy=email.policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    body: Any = None
    files = []
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if name == "payload_json":
            body = json.loads(data)
        else:
            files.append((name, part.get_filename() or "", part.get_content_type(), data))
    return body, files


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int = 1
    retry_after: float = 0.2
    is_global: bool = False
    after_store: bool = False  # run the request (store the message), then answer the error
    # "answer": answer `status`; "reset": close the TCP connection without an answer; "hang": never
    # answer (until `hold` seconds pass or the server stops), so the client times out
    action: str = "answer"
    hold: float = 30.0
    query: dict[str, str] | None = None  # only requests with these query values
    content_has: str | None = None  # only requests whose JSON body's content holds this text


@dataclass
class GatewaySession:
    id: str
    shard: tuple[int, int] | None = None  # IDENTIFY's [shard_id, shard_count]; None: unsharded
    seq: int = 0
    buffer: list[dict] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None


def shard_of(guild: int | None, count: int) -> int:
    """The shard Discord sends a guild's events to; direct messages (no guild) go to shard 0."""
    return 0 if guild is None else (guild >> 22) % count


def user_object(uid: int, name: str, bot: bool = False) -> dict:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None, "bot": bot}


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": with "; charset=utf-8" discord.py treats the body as text.
    resp = web.Response(body=json.dumps(data).encode(), status=status, headers=headers or {})
    resp.headers["Content-Type"] = "application/json"
    return resp
