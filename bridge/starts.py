"""What a Start may carry, how the core fills it in, and its stored form: pure functions."""

from __future__ import annotations

import dataclasses

from .config import BridgeSection
from .events import Mode, Room, Start

__all__ = ["check_start", "complete_start", "start_from_dict", "start_to_dict"]


def check_start(start: Start, s: BridgeSection) -> str | None:
    """Why `start` is refused (the notice to the user), or None when it may begin."""
    if len(start.interests) > s.max_interests:
        return f"Too many interests ({len(start.interests)}); at most {s.max_interests}. No chat was started."
    for interest in start.interests:
        if len(interest) > s.max_interest_length:
            return f"An interest is too long; at most {s.max_interest_length} characters. No chat was started."
    if start.mode is Mode.ASK and not (start.question and start.question.strip()):
        return "Ask mode needs a question. No chat was started."
    if start.question is not None and len(start.question) > s.max_question_length:
        return f"The question is too long; at most {s.max_question_length} characters. No chat was started."
    if not (2 <= len(start.language) <= 3 and start.language.isalpha()):
        return "The language must be a two- or three-letter code such as “en”. No chat was started."
    return None


def complete_start(start: Start, backend: str, room: Room, user: str | None = None) -> Start:
    """The Start a backend gets: its name, interests trimmed, lower-cased and unique, a user key, a scope.

    `user`: the room's key already made (`str(room)`), so a session keeps one copy of it."""
    return dataclasses.replace(
        start,
        backend=backend,
        interests=tuple(dict.fromkeys(i.strip().lower() for i in start.interests if i.strip())),
        user=start.user or user or str(room),
        scope=start.scope or room.platform,
        accept=tuple(start.accept),
    )


def start_to_dict(start: Start) -> dict:
    """JSON-ready form of a Start, as the store keeps it: the fields that differ from their defaults
    (the store keeps one per session; `start_from_dict` fills in the rest)."""
    data = {}
    for name, default in _DEFAULTS:
        value = getattr(start, name)
        if value != default:
            data[name] = value
    if "mode" in data:
        data["mode"] = start.mode.value
    for name in ("interests", "accept"):
        if name in data:
            data[name] = list(data[name])
    return data


_DEFAULTS = tuple((f.name, f.default) for f in dataclasses.fields(Start))


def start_from_dict(data: dict) -> Start:
    """The Start of a stored session; unknown keys (of a newer or older version) are ignored."""
    fields = {f.name for f in dataclasses.fields(Start)}
    values = {k: v for k, v in data.items() if k in fields}
    values["interests"] = tuple(values.get("interests", ()))
    values["accept"] = tuple(values.get("accept", ()))
    values["mode"] = Mode(values.get("mode", "random"))
    return Start(**values)
