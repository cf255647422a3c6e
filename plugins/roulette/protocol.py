"""chat-roulette-python wire format: client JSON lines, server lines, and our typed payload inside `comm` data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from bridge.events import Message, StoppedTyping, Typing

__all__ = [
    "Ack",
    "Bounced",
    "Comm",
    "Exit",
    "Ids",
    "MAX_LINE",
    "Pair",
    "Ping",
    "ProtocolError",
    "ServerError",
    "ServerLine",
    "UCO_LENGTH",
    "Unknown",
    "comm_line",
    "connect_line",
    "decode_payload",
    "encode_payload",
    "encode_text",
    "exit_line",
    "make_uco",
    "parse_line",
    "pong_line",
]

MAX_LINE = 32768  # the server answers {"error": "message too long"} to longer lines
UCO_LENGTH = 24  # the server keeps the first 24 characters of `uco`, then only the alphanumerics
FIELD_LENGTH = 24  # likewise for `session` and `nonce`

# What travels inside `comm` data between two stranger-bridges (any other client sees JSON text).
TYPE_MESSAGE = "message"
TYPE_TYPING = "typing"
TYPE_STOPPED = "stopped_typing"

# json.dumps(…, ensure_ascii=True, separators=(",", ":")), minus the encoder it makes per call
_COMPACT = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_TYPING_DATA = _COMPACT({"type": TYPE_TYPING})
_STOPPED_DATA = _COMPACT({"type": TYPE_STOPPED})


class ProtocolError(ValueError):
    """A server line that is not a JSON object."""


@dataclass(frozen=True, slots=True)
class Ids:
    """The three strings every client line carries besides `cmd`."""

    uco: str
    session: str
    nonce: str


def make_uco(prefix: str, random_part: str) -> str:
    """Our identifier: the prefix then random characters, alphanumerics only, cut to 24.

    The server filters the same way; sending it pre-filtered keeps what the partner sees equal to
    what we think we are.
    """
    return "".join(ch for ch in prefix + random_part if ch.isascii() and ch.isalnum())[:UCO_LENGTH]


def _line(cmd: str, ids: Ids, **extra: Any) -> bytes:
    obj = {"cmd": cmd, "uco": ids.uco, "session": ids.session, "nonce": ids.nonce, **extra}
    # ASCII escapes: the server (Python 2) reads bytes and forwards with json.dumps anyway.
    return (_COMPACT(obj) + "\n").encode("ascii")


def connect_line(ids: Ids) -> bytes:
    """Register; the server answers {"ack": nonce}."""
    return _line("connect", ids)


def pong_line(ids: Ids) -> bytes:
    """The answer to {"cmd": "ping"}, with the four keys (a missing key gets us thrown out)."""
    return _line("pong", ids)


def exit_line(ids: Ids) -> bytes:
    """Leave: the server forgets us."""
    return _line("exit", ids)


def comm_line(ids: Ids, data: str) -> bytes:
    """A line the server forwards unchanged to our partner (or bounces as "no peer")."""
    # _line's JSON object written out, the same bytes (a test compares them): one per message.
    return (
        f'{{"cmd":"comm","uco":{_quoted(ids.uco)},"session":{_quoted(ids.session)},"nonce":{_quoted(ids.nonce)},'
        f'"data":{_quoted(data)}}}\n'
    ).encode("ascii")


def encode_payload(event: Message | Typing | StoppedTyping) -> str:
    """Our chat payload: a JSON object with a `type` field, carried as the `data` string."""
    if isinstance(event, Message):
        return encode_text(event.text)
    return _TYPING_DATA if isinstance(event, Typing) else _STOPPED_DATA


def encode_text(text: str) -> str:
    """`encode_payload` of Message(text), without the Message: the JSON object written out (the same text)."""
    return f'{{"type":"message","text":{_quoted(text)}}}'


def decode_payload(data: Any) -> Message | Typing | StoppedTyping | None:
    """The event a partner's `data` stands for; plain or unknown data is shown as text.

    None for nothing to show (no data, empty text).
    """
    obj = data
    if isinstance(data, str):
        if not data.strip():
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            return Message(data)
    if isinstance(obj, dict):
        kind = obj.get("type")
        if kind == TYPE_MESSAGE and isinstance(obj.get("text"), str):
            return Message(obj["text"]) if obj["text"].strip() else None
        if kind == TYPE_TYPING:
            return Typing()
        if kind == TYPE_STOPPED:
            return StoppedTyping()
    if data is None:
        return None
    if isinstance(data, str):
        return Message(data)
    return Message(json.dumps(data, ensure_ascii=False))


def bounced_kind(msg: Any) -> str | None:
    """The payload type of a line the server bounced: "message", "typing", ... or "other"."""
    if not isinstance(msg, dict):
        return None
    event = decode_payload(msg.get("data"))
    if isinstance(event, Message):
        return TYPE_MESSAGE
    if isinstance(event, Typing):
        return TYPE_TYPING
    if isinstance(event, StoppedTyping):
        return TYPE_STOPPED
    return "other"


# ---- server lines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """{"ack": nonce}: registered."""

    nonce: str


@dataclass(frozen=True, slots=True)
class Pair:
    """{"cmd": "pair", "uco": partner}: paired, at first and at every 30 s redraw."""

    uco: str


@dataclass(frozen=True, slots=True)
class Comm:
    """A partner's comm line, forwarded unchanged."""

    data: Any


@dataclass(frozen=True, slots=True)
class Ping:
    """{"cmd": "ping"}: answer with a pong within 7 s."""


@dataclass(frozen=True, slots=True)
class Bounced:
    """{"error": "no peer" | "failed", "msg": our line}: not delivered; `kind` is its payload type."""

    error: str
    kind: str | None


@dataclass(frozen=True, slots=True)
class ServerError:
    """Any other {"error": ...}: "message too long", "Unknown command [...]"."""

    text: str


@dataclass(frozen=True, slots=True)
class Exit:
    """{"exit": true}: the server closes the connection (bad line, or a new session with our uco)."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A JSON object of no known shape: ignored."""


ServerLine = Ack | Pair | Comm | Ping | Bounced | ServerError | Exit | Unknown


def parse_line(line: bytes | str) -> ServerLine | None:
    """One server line; None for a blank line. Raises ProtocolError for non-JSON or a non-object."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError("not JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object")
    if obj.get("exit"):
        reason = obj.get("reason")
        return Exit(str(reason) if reason is not None else None)
    if "error" in obj:
        error = str(obj["error"])
        if "msg" in obj:
            return Bounced(error, bounced_kind(obj["msg"]))
        return ServerError(error)
    if "ack" in obj:
        return Ack(str(obj["ack"]))
    cmd = obj.get("cmd")
    if cmd == "ping":
        return Ping()
    if cmd == "pair":
        return Pair(str(obj.get("uco", "")))
    if cmd == "comm":
        return Comm(obj.get("data"))
    return Unknown()
