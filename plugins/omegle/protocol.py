"""The Omegle HTTP protocol's answers, pure: /start, /events and /status bodies parsed into wire events."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.hygiene import cut

__all__ = [
    "AntinudeBanned",
    "CommonLikes",
    "ConnectionDied",
    "Count",
    "Error",
    "GotMessage",
    "OmegleConnected",
    "OmegleEvent",
    "OmegleQuestion",
    "OmegleStoppedTyping",
    "OmegleTyping",
    "OmegleWaiting",
    "ProtocolError",
    "RecaptchaRejected",
    "RecaptchaRequired",
    "SPY_LABELS",
    "ServerMessage",
    "SpyDisconnected",
    "SpyMessage",
    "SpyStoppedTyping",
    "SpyTyping",
    "StartAnswer",
    "StatusInfo",
    "StrangerDisconnected",
    "SuggestSpyee",
    "action_ok",
    "parse_event",
    "parse_events",
    "parse_start",
    "parse_status",
]

log = logging.getLogger(__name__)

SPY_LABELS = ("Stranger 1", "Stranger 2")


class ProtocolError(ValueError):
    """A server answered something that is not the Omegle protocol."""


# ---- typed protocol events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OmegleWaiting:
    """`waiting`: queued."""


@dataclass(frozen=True, slots=True)
class OmegleConnected:
    """`connected`: paired."""


@dataclass(frozen=True, slots=True)
class CommonLikes:
    """`commonLikes`: shared interests (same batch as `connected`)."""

    likes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OmegleQuestion:
    """`question`: the spy's question."""

    text: str


@dataclass(frozen=True, slots=True)
class GotMessage:
    """`gotMessage`: the stranger wrote."""

    text: str


@dataclass(frozen=True, slots=True)
class OmegleTyping:
    """`typing`."""


@dataclass(frozen=True, slots=True)
class OmegleStoppedTyping:
    """`stoppedTyping`."""


@dataclass(frozen=True, slots=True)
class StrangerDisconnected:
    """`strangerDisconnected`: the partner left."""


@dataclass(frozen=True, slots=True)
class SpyMessage:
    """`spyMessage`: what one of the two answerers wrote (seen by the spy)."""

    who: str
    text: str


@dataclass(frozen=True, slots=True)
class SpyTyping:
    """`spyTyping`."""

    who: str


@dataclass(frozen=True, slots=True)
class SpyStoppedTyping:
    """`spyStoppedTyping`."""

    who: str


@dataclass(frozen=True, slots=True)
class SpyDisconnected:
    """`spyDisconnected`: one answerer left; the spy's chat ends."""

    who: str


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """`serverMessage`: a notice no person typed."""

    text: str


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """`statusInfo`: the /status object; only the online count is kept."""

    count: int | None


@dataclass(frozen=True, slots=True)
class Count:
    """`count`: users online (legacy)."""

    count: int


@dataclass(frozen=True, slots=True)
class SuggestSpyee:
    """`suggestSpyee`: the server suggests answer mode."""


@dataclass(frozen=True, slots=True)
class RecaptchaRequired:
    """`recaptchaRequired`: a captcha must be solved in a browser."""

    key: str = ""


@dataclass(frozen=True, slots=True)
class RecaptchaRejected:
    """`recaptchaRejected`: the captcha answer was wrong."""

    key: str = ""


@dataclass(frozen=True, slots=True)
class AntinudeBanned:
    """`antinudeBanned`: banned for a while."""


@dataclass(frozen=True, slots=True)
class Error:
    """`error`: fatal; the chat ends."""

    text: str


@dataclass(frozen=True, slots=True)
class ConnectionDied:
    """`connectionDied`: the server lost the session."""


OmegleEvent = (
    OmegleWaiting
    | OmegleConnected
    | CommonLikes
    | OmegleQuestion
    | GotMessage
    | OmegleTyping
    | OmegleStoppedTyping
    | StrangerDisconnected
    | SpyMessage
    | SpyTyping
    | SpyStoppedTyping
    | SpyDisconnected
    | ServerMessage
    | StatusInfo
    | Count
    | SuggestSpyee
    | RecaptchaRequired
    | RecaptchaRejected
    | AntinudeBanned
    | Error
    | ConnectionDied
)

# ---- answers -----------------------------------------------------------------------------------


def action_ok(body: str) -> bool:
    """Whether an action (/send, /typing, /disconnect, ...) answer means success (`win`)."""
    return body.strip() == "win"


@dataclass(frozen=True, slots=True)
class StartAnswer:
    """What /start gave: the client id and the first events (with firstevents=1)."""

    client_id: str
    events: tuple[OmegleEvent, ...] = ()


def _loads(body: str | bytes, what: str):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: not JSON ({exc.__class__.__name__})") from None


def parse_start(body: str | bytes) -> StartAnswer:
    """Parse a /start answer: `{"clientID": ..., "events": [...]}`, or old servers' quoted id."""
    data = _loads(body, "/start")
    if isinstance(data, str):
        client_id, events = data, ()
    elif isinstance(data, dict):
        client_id = data.get("clientID")
        if not isinstance(client_id, str):
            raise ProtocolError("/start: no clientID in the answer")
        events = _parse_list(data.get("events"), "/start events")
    else:
        raise ProtocolError(f"/start: expected an object or a string, got {type(data).__name__}")
    if not client_id or len(client_id) > 512 or not client_id.isprintable():
        raise ProtocolError("/start: unusable client id")
    return StartAnswer(client_id, events)


def parse_events(body: str | bytes) -> tuple[OmegleEvent, ...]:
    """Parse an /events answer: a JSON array of events, `null` or `[]` (nothing happened)."""
    return _parse_list(_loads(body, "/events"), "/events")


def parse_status(body: str | bytes) -> int | None:
    """The online count from a /status answer (or a legacy /count answer)."""
    data = _loads(body, "/status")
    if isinstance(data, dict):
        return _count(data.get("count"))
    return _count(data)


def _parse_list(data: object, what: str) -> tuple[OmegleEvent, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ProtocolError(f"{what}: expected an array, got {type(data).__name__}")
    out: list[OmegleEvent] = []
    for raw in data:
        event = parse_event(raw)
        if event is not None:
            out.append(event)
    return tuple(out)


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _text(args: Sequence[object], name: str, index: int = 0) -> str:
    if len(args) <= index or not isinstance(args[index], str):
        raise ProtocolError(f"{name}: argument {index + 1} must be a string")
    return args[index]  # type: ignore[return-value]


def _label(args: Sequence[object], name: str) -> str:
    who = _text(args, name)
    if who not in SPY_LABELS:
        # A server-chosen label is shown as the speaker's name: never let it say anything else.
        raise ProtocolError(f"{name}: unknown stranger label")
    return who


def _optional(args: Sequence[object]) -> str:
    return args[0] if args and isinstance(args[0], str) else ""


def parse_event(raw: object) -> OmegleEvent | None:
    """One `[name, args...]` entry; None (debug log) for unknown or ignorable events."""
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise ProtocolError("event: expected [name, args...]")
    name, args = raw[0], raw[1:]
    match name:
        case "waiting":
            return OmegleWaiting()
        case "connected":
            return OmegleConnected()
        case "commonLikes":
            likes = args[0] if args else None
            if not isinstance(likes, list) or not all(isinstance(x, str) for x in likes):
                raise ProtocolError("commonLikes: argument must be a list of strings")
            return CommonLikes(tuple(likes))
        case "question":
            return OmegleQuestion(_text(args, name))
        case "gotMessage":
            return GotMessage(_text(args, name))
        case "typing":
            return OmegleTyping()
        case "stoppedTyping":
            return OmegleStoppedTyping()
        case "strangerDisconnected":
            return StrangerDisconnected()
        case "spyMessage":
            return SpyMessage(_label(args, name), _text(args, name, 1))
        case "spyTyping":
            return SpyTyping(_label(args, name))
        case "spyStoppedTyping":
            return SpyStoppedTyping(_label(args, name))
        case "spyDisconnected":
            return SpyDisconnected(_label(args, name))
        case "serverMessage":
            return ServerMessage(_text(args, name))
        case "statusInfo":
            info = args[0] if args else None
            return StatusInfo(_count(info.get("count")) if isinstance(info, dict) else None)
        case "count":
            count = _count(args[0] if args else None)
            return Count(count) if count is not None else None
        case "suggestSpyee":
            return SuggestSpyee()
        case "recaptchaRequired":
            return RecaptchaRequired(_optional(args))
        case "recaptchaRejected":
            return RecaptchaRejected(_optional(args))
        case "antinudeBanned":
            return AntinudeBanned()
        case "error":
            return Error(_optional(args))
        case "connectionDied":
            return ConnectionDied()
        case "identDigests":
            return None
        case _:
            log.debug("omegle: ignoring unknown event %s", cut(name, 40))
            return None
