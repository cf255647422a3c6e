"""Session records as the Redis store writes them: the hash field of a room and the JSON value of a record."""

from __future__ import annotations

import json

from ..events import Room
from .base import SessionRecord

__all__ = ["decode_record", "encode_record", "room_field"]


def room_field(room: Room) -> str:
    """The hash field of a room's session: [platform, id] as JSON."""
    return json.dumps([room.platform, room.id])


def encode_record(record: SessionRecord) -> str:
    """A session record as the JSON value of its hash field (the owner is the hash it is in)."""
    return json.dumps(
        {
            "room": [record.room.platform, record.room.id],
            "state": record.state,
            "backend": record.backend,
            "handle": record.handle,
            "start": record.start,
            "created": record.created,
            "updated": record.updated,
            **({"refs": record.refs} if record.refs is not None else {}),
        }
    )


def decode_record(value: str, owner: str) -> SessionRecord:
    """The session record of a hash value of `owner`; ValueError, TypeError or KeyError when unreadable."""
    data = json.loads(value)
    platform, room = data["room"]
    start = data["start"]
    if not isinstance(start, dict):
        raise TypeError("start is not an object")
    return SessionRecord(
        Room(str(platform), str(room)), str(data["state"]), str(data["backend"]), data.get("handle"), start,
        float(data["created"]), float(data["updated"]), owner, data.get("refs"),
    )
