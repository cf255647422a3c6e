"""The Omegle HTTP protocol, pure: /start query strings, /start and /events answers, event mapping."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bridge.events import (
    Connected,
    Disconnected,
    Event,
    Message,
    Mode,
    Question,
    Reason,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.hygiene import clean, cut

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
    "RANDID_ALPHABET",
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
    "Translator",
    "action_ok",
    "parse_event",
    "parse_events",
    "parse_start",
    "parse_status",
    "random_id",
    "start_params",
    "start_query",
]

log = logging.getLogger(__name__)

RANDID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
SPY_LABELS = ("Stranger 1", "Stranger 2")
MAX_SERVER_TEXT = 500  # characters of server-sent free text (errors, notices) shown to a user


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

# ---- requests ----------------------------------------------------------------------------------


def random_id(choice=secrets.choice) -> str:
    """An 8-character `randid` from Omegle's alphabet (no 0, 1, I, O)."""
    return "".join(choice(RANDID_ALPHABET) for _ in range(8))


def start_params(
    start: Start,
    randid: str,
    *,
    caps: str | None = "recaptcha2",
    firstevents: bool = True,
) -> list[tuple[str, str]]:
    """The /start query parameters for a user's Start, in python-omegle's order.

    Random with interests sends `topics` (a JSON array); answer mode (or `answer_questions`)
    sends `wantsspy=1`; ask mode sends `ask=<question>`. Group mode has no Omegle equivalent:
    the caller refuses it before asking.
    """
    params: list[tuple[str, str]] = []
    if caps:
        params += [("caps", caps), ("rcs", "1")]
    if firstevents:
        params.append(("firstevents", "1"))
    params += [("randid", randid), ("lang", start.language or "en")]
    if start.mode is Mode.ASK:
        params.append(("ask", start.question or ""))
    elif start.mode is Mode.ANSWER or start.answer_questions:
        params.append(("wantsspy", "1"))
    elif start.interests:
        params.append(("topics", json.dumps(list(start.interests), ensure_ascii=False, separators=(",", ":"))))
    return params


def start_query(start: Start, randid: str, **options) -> str:
    """The /start query string (without the leading "?"); see `start_params`."""
    return urlencode(start_params(start, randid, **options))


def action_ok(body: str) -> bool:
    """Whether an action (/send, /typing, /disconnect, ...) answer means success (`win`)."""
    return body.strip() == "win"


# ---- answers -----------------------------------------------------------------------------------


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


# ---- protocol events → core events -------------------------------------------------------------

CAPTCHA_TEXT = "The stranger service asks for a captcha, which can only be solved in its own web page."
CAPTCHA_REJECTED_TEXT = "The stranger service rejected the captcha."
BANNED_TEXT = "The stranger service has banned this bridge for a while."
DIED_TEXT = "The stranger service lost this chat."
SUGGEST_SPYEE_TEXT = "The stranger service suggests answering questions (answer mode)."


@dataclass
class Translator:
    """Turns protocol events into core events for one chat, batch by batch.

    It remembers whether the chat is connected (events before `connected` imply it), folds
    `commonLikes` and `question` of the connecting batch into one Connected, labels spy events,
    and ends the stream with one final Disconnected. `count` keeps the last online figure.
    """

    spy: bool = False  # we asked the question: two labelled strangers
    connected: bool = False
    done: bool = False
    count: int | None = None
    _likes: tuple[str, ...] = field(default=(), repr=False)  # seen before `connected`
    _question: str | None = field(default=None, repr=False)  # seen before `connected`, or shown

    def batch(self, events: Iterable[OmegleEvent]) -> list[Event]:
        """Core events for one /start or /events batch; nothing after the final Disconnected."""
        events = list(events)
        if not self.connected:
            # commonLikes and question follow `connected` in its batch: gather them first.
            for event in events:
                if type(event) is CommonLikes:
                    self._likes = event.likes
                elif type(event) is OmegleQuestion:
                    self._question = event.text
        out: list[Event] = []
        for event in events:
            if self.done:
                break
            out.extend(self._one(event))
        return out

    def _connect(self) -> list[Event]:
        if self.connected:
            return []
        self.connected = True
        strangers = SPY_LABELS if self.spy else ("Stranger",)
        return [Connected(common_interests=self._likes, question=self._question, strangers=strangers)]

    def _end(self, notice: str | None, reason: str, stranger: str | None = None) -> list[Event]:
        self.done = True
        out: list[Event] = [ServerNotice(notice)] if notice else []
        out.append(Disconnected(stranger=stranger, reason=reason, final=True))
        return out

    def _one(self, event: OmegleEvent) -> list[Event]:
        match event:
            case OmegleWaiting():
                return [] if self.connected else [Waiting()]
            case OmegleConnected():
                return self._connect()
            case CommonLikes() | OmegleQuestion() if not self.connected:
                return []  # folded into Connected when `connected` is in the batch
            case CommonLikes():
                return []
            case OmegleQuestion(text=text):
                if text == self._question:
                    return []
                self._question = text
                return [Question(text)]
            case GotMessage(text=text):
                return [*self._connect(), Message(text)]
            case OmegleTyping():
                return [*self._connect(), Typing()]
            case OmegleStoppedTyping():
                return [StoppedTyping()] if self.connected else []
            case StrangerDisconnected():
                return self._end(None, Reason.STRANGER)
            case SpyMessage(who=who, text=text):
                return [*self._connect(), Message(text, who)]
            case SpyTyping(who=who):
                return [*self._connect(), Typing(who)]
            case SpyStoppedTyping(who=who):
                return [StoppedTyping(who)] if self.connected else []
            case SpyDisconnected(who=who):
                return self._end(None, Reason.STRANGER, who)
            case ServerMessage(text=text):
                return [ServerNotice(_server_text(text))]
            case StatusInfo(count=count) | Count(count=count):
                if count is not None:
                    self.count = count
                return []
            case SuggestSpyee():
                return [] if self.connected else [ServerNotice(SUGGEST_SPYEE_TEXT)]
            case RecaptchaRequired():
                return self._end(CAPTCHA_TEXT, Reason.REFUSED)
            case RecaptchaRejected():
                return self._end(CAPTCHA_REJECTED_TEXT, Reason.REFUSED)
            case AntinudeBanned():
                return self._end(BANNED_TEXT, Reason.REFUSED)
            case Error(text=text):
                detail = _server_text(text) if text else "no detail"
                return self._end(f"The stranger service reported an error: {detail}", Reason.ERROR)
            case ConnectionDied():
                return self._end(DIED_TEXT, Reason.ERROR)
        return []


def _server_text(text: str) -> str:
    return clean(text, MAX_SERVER_TEXT).strip() or "(empty)"
