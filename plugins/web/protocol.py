"""The Omegle HTTP protocol, server side, pure: request parsing, validation, answer payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from bridge.events import Mode, Start

__all__ = [
    "FORM_TYPE",
    "MAX_FIELD",
    "MAX_FIELDS",
    "MAX_INTERESTS",
    "MAX_INTEREST_LENGTH",
    "MAX_QUESTION_LENGTH",
    "ProtocolError",
    "StartRequest",
    "client_address",
    "parse_ack",
    "parse_form",
    "parse_start",
    "status_payload",
]

FORM_TYPE = "application/x-www-form-urlencoded"
# The core's default limits: checked here so a refused start is a 400, not a client stuck searching.
MAX_INTERESTS = 20
MAX_INTEREST_LENGTH = 64
MAX_QUESTION_LENGTH = 500
MAX_FIELD = 100_000  # characters of any one form field (the body limit applies first)
MAX_FIELDS = 64  # fields of one form, at most


class ProtocolError(ValueError):
    """A request the protocol does not allow; the message is safe to show to the client."""


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What a /start asked for."""

    start: Start
    firstevents: bool = False  # answer {"clientID", "events"} instead of the bare quoted id
    spy: bool = False  # the client asks the question and watches (spy* events)
    wants_likes: bool = False  # the client sent topics: always give commonLikes with connected
    acks: bool = False  # the client acknowledges events (our own page; see parse_ack)
    rich: bool = False  # the client takes the rich-relay extension events (our own page: `rich=1`)


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "true", "yes", "on")


def parse_start(params: Mapping[str, str]) -> StartRequest:
    """Map /start parameters to a Start. Unknown and tolerated parameters (caps, rcs, spid, m,
    group, cc, randid, nocache, ...) are ignored. Raises ProtocolError for invalid values."""
    lang = (params.get("lang") or "en").strip().lower()
    if not (2 <= len(lang) <= 3 and lang.isascii() and lang.isalpha()):
        raise ProtocolError("lang must be a two- or three-letter language code")
    question = params.get("ask")
    wantsspy = _flag(params.get("wantsspy"))
    firstevents = _flag(params.get("firstevents"))
    acks = parse_ack(params.get("ack")) is not None
    rich = _flag(params.get("rich"))
    if question is not None:
        question = " ".join(question.split())
        if not question:
            raise ProtocolError("ask needs a question")
        if len(question) > MAX_QUESTION_LENGTH:
            raise ProtocolError(f"the question is longer than {MAX_QUESTION_LENGTH} characters")
        if wantsspy:
            raise ProtocolError("ask and wantsspy exclude each other")
        start = Start(language=lang, question=question, mode=Mode.ASK)
        return StartRequest(start, firstevents=firstevents, spy=True, acks=acks, rich=rich)
    if wantsspy:
        start = Start(language=lang, mode=Mode.ANSWER, answer_questions=True)
        return StartRequest(start, firstevents=firstevents, acks=acks, rich=rich)
    topics = params.get("topics")
    interests = parse_topics(topics) if topics is not None else ()
    start = Start(language=lang, interests=interests, mode=Mode.RANDOM, strict_interests=False)
    return StartRequest(start, firstevents=firstevents, wants_likes=topics is not None, acks=acks, rich=rich)


def parse_ack(value: str | None) -> int | None:
    """The optional `ack` of /start (0: this client acknowledges) and /events (how many of the
    chat's events the client has shown). Omegle clients never send it. Raises ProtocolError."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise ProtocolError("ack must be a non-negative integer")
    return int(value)


def parse_topics(raw: str) -> tuple[str, ...]:
    """The `topics` JSON array as clean, lower-case, de-duplicated interests."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # deep nesting exhausts the decoder's recursion
        raise ProtocolError("topics must be a JSON array of strings") from None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ProtocolError("topics must be a JSON array of strings")
    interests = tuple(dict.fromkeys(" ".join(t.split()).lower() for t in value if t.strip()))
    if len(interests) > MAX_INTERESTS:
        raise ProtocolError(f"at most {MAX_INTERESTS} topics")
    if any(len(t) > MAX_INTEREST_LENGTH for t in interests):
        raise ProtocolError(f"a topic is longer than {MAX_INTEREST_LENGTH} characters")
    return interests


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    """Fields of an x-www-form-urlencoded body (the first value of each name wins).

    An empty body is an empty form whatever its type; anything else must be a form."""
    if not body:
        return {}
    if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
        raise ProtocolError(f"the body must be {FORM_TYPE}")
    try:
        pairs = _pairs(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the body is not a valid form") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if len(value) > MAX_FIELD:
            raise ProtocolError("a field is too long")
        fields.setdefault(key, value)
    return fields


def _pairs(text: str) -> list[tuple[str, str]]:
    """urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    written out: the same pairs and the same errors, minus its argument coercion (every /send
    and /events body passes here). A field with neither '+' nor '%' is taken as it is."""
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "+" in name or "%" in name:
            name = unquote(name.replace("+", " "), errors="strict")
        if "+" in value or "%" in value:
            value = unquote(value.replace("+", " "), errors="strict")
        pairs.append((name, value))
    return pairs


def client_address(peer: str | None, header_value: str | None) -> str:
    """The address to count a request against: the right-most entry of the trusted proxy's
    header (the one the proxy itself appended), else the socket peer."""
    if header_value:
        last = header_value.rsplit(",", 1)[-1].strip()
        if last and len(last) <= 64:
            return last
    return peer or "unknown"


def status_payload(count: int, now: float | None = None) -> dict:
    """The /status answer (and the statusInfo event's argument)."""
    return {
        "count": count,
        "servers": [],
        "spyQueueTime": 0,
        "spyeeQueueTime": 0,
        "timestamp": time.time() if now is None else now,
        "force_unmon": False,
        "antinudeservers": [],
        "antinudepercent": 1.0,
        "rtmfp": "",
    }
