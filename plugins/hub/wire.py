"""Stranger-side events as JSON for the relay between instances, built from the dataclasses so new fields pass."""

from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any

from bridge import events

__all__ = ["decode_event", "encode_event"]

# Kinds a hub chat relays between its members; anything else never goes on the wire.
_KINDS = {cls.__name__: cls for cls in (events.Message, events.Typing, events.StoppedTyping, events.Edit, events.Retract, events.Reaction)}
_NESTED = {"Image": events.Image}


def encode_event(event: Any) -> dict[str, Any]:
    """{"k": kind, "f": fields} with bytes as base64 and nested dataclasses (an Image) tagged."""
    kind = type(event).__name__
    if _KINDS.get(kind) is not type(event):
        raise TypeError(f"{kind} is not relayed between instances")
    return {"k": kind, "f": _fields(event)}


def decode_event(data: dict[str, Any]) -> Any:
    """The event `encode_event` made; fields this version does not know (a newer instance's) are left out."""
    cls = _KINDS[str(data["k"])]
    return _build(cls, data["f"])


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: _value(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dc": type(value).__name__, "f": _fields(value)}
    if isinstance(value, bytes):
        return {"__b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_value(v) for v in value]
    return value


def _build(cls: type, fields: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{name: _back(value) for name, value in fields.items() if name in known})


def _back(value: Any) -> Any:
    if isinstance(value, dict):
        if "__b64" in value:
            return base64.b64decode(value["__b64"])
        if "__dc" in value:
            return _build(_NESTED[str(value["__dc"])], value["f"])
        return value
    if isinstance(value, list):  # every sequence field of an event is a tuple
        return tuple(_back(v) for v in value)
    return value
