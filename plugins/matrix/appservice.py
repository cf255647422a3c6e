"""Application service pieces (pure): the registration, ghost ids, and what a pushed transaction holds."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["Pushed", "Registration", "RegistrationError", "bearer_ok", "ghost_id", "parse_registration", "parse_transaction"]


class RegistrationError(ValueError):
    """The registration file cannot be used for ghost mode (the message says why)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """The fields of a registration YAML that the bridge uses."""

    as_token: str
    hs_token: str
    sender_localpart: str
    users: tuple[re.Pattern[str], ...]  # exclusive user namespaces
    rate_limited: bool
    receive_ephemeral: bool


def parse_registration(text: str, *, bot: str, ghost_prefix: str) -> Registration:
    """Check a registration against the bot's mxid and the ghost prefix; raise RegistrationError."""
    import yaml  # only ghost mode reads a registration: PyYAML is 0.7 MB of heap the other modes never use

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistrationError(f"not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistrationError("not a mapping")
    for key in ("as_token", "hs_token", "sender_localpart"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RegistrationError(f"{key} is missing")
    localpart, _, server = bot[1:].partition(":")
    if data["sender_localpart"] != localpart:
        raise RegistrationError(f"user_id must be @{data['sender_localpart']}:<server>, the registration's sender")
    namespaces = data.get("namespaces") or {}
    users = []
    for item in (namespaces.get("users") or []) if isinstance(namespaces, dict) else []:
        if isinstance(item, dict) and item.get("exclusive") and isinstance(item.get("regex"), str):
            try:
                users.append(re.compile(item["regex"]))
            except re.error as exc:
                raise RegistrationError(f"bad user namespace regex: {exc}") from exc
    sample = f"@{ghost_prefix}0123abcd:{server}"
    if not any(p.fullmatch(sample) for p in users):
        raise RegistrationError(f"no exclusive user namespace covers ghosts like {sample}")
    return Registration(
        as_token=data["as_token"],
        hs_token=data["hs_token"],
        sender_localpart=data["sender_localpart"],
        users=tuple(users),
        rate_limited=bool(data.get("rate_limited", True)),
        receive_ephemeral=bool(data.get("receive_ephemeral") or data.get("de.sorunome.msc2409.push_ephemeral")),
    )


def ghost_id(prefix: str, server: str) -> str:
    """A fresh ghost mxid: random, so it tells nothing about the user and differs for every chat."""
    return f"@{prefix}{secrets.token_hex(8)}:{server}"


def bearer_ok(authorization: str | None, query_token: str | None, hs_token: str) -> bool | None:
    """True: the homeserver's token; False: a wrong token; None: no token at all (constant time)."""
    token = None
    if authorization and authorization.startswith("Bearer "):
        token = authorization[len("Bearer ") :]
    elif query_token:
        token = query_token  # the legacy ?access_token= form
    if token is None:
        return None
    return hmac.compare_digest(token.encode(), hs_token.encode())


@dataclass(frozen=True, slots=True)
class Pushed:
    """One transaction: room events (with room_id) and typing states per room."""

    events: tuple[dict[str, Any], ...]
    typing: tuple[tuple[str, tuple[str, ...]], ...]  # (room id, users typing now)


def parse_transaction(body: Any) -> Pushed:
    """The usable parts of a transaction body; malformed entries are skipped, not fatal."""
    if not isinstance(body, dict):
        raise ValueError("transaction body is not an object")
    events = tuple(
        e for e in body.get("events") or [] if isinstance(e, dict) and isinstance(e.get("room_id"), str)
    )
    ephemeral = body.get("ephemeral")
    if ephemeral is None:
        ephemeral = body.get("de.sorunome.msc2409.ephemeral")
    typing = []
    for e in ephemeral or []:
        if not isinstance(e, dict) or e.get("type") != "m.typing" or not isinstance(e.get("room_id"), str):
            continue
        users = (e.get("content") or {}).get("user_ids")
        if isinstance(users, list):
            typing.append((e["room_id"], tuple(u for u in users if isinstance(u, str))))
    return Pushed(events, tuple(typing))
