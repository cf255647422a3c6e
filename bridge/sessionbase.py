"""What the parts of a session share: its states, the end-of-stream marker, and the throttled-burst rule."""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from types import MappingProxyType

from .events import Reason
from .metrics import counter_key

__all__ = ["Ended", "FAILURES", "NOTHING_YET", "RELAYED_TO_STRANGER", "RELAYED_TO_USER", "STORE_DOWN", "State", "burst"]

STORE_DOWN = "The bridge cannot reach its database right now, so no chat was started. Please try again in a minute."
FAILURES = (Reason.ERROR, Reason.REFUSED)  # ends that a backend explains in its own notice
# Counted on every message: the counter keys are made once.
RELAYED_TO_STRANGER = counter_key("messages_relayed", direction="to_stranger")
RELAYED_TO_USER = counter_key("messages_relayed", direction="to_user")
# A session's per-stranger tables until their first entry: one shared, read-only, empty mapping
# (most sessions wait idle, and a dict each is 64 bytes; a write to this one fails loudly).
NOTHING_YET: Mapping = MappingProxyType({})


class State(str, enum.Enum):
    IDLE = "idle"
    SEARCHING = "searching"
    CHATTING = "chatting"


class Ended:
    """Inbox marker: a chat's event stream finished (error: what it raised)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def burst(until: float | None, refill: float) -> tuple[float, bool]:
    """One message was dropped: the new end of its throttled burst, and whether a burst starts.

    A burst ends only when nothing was dropped for as long as the bucket takes to refill
    (burst / rate): a flood that lets a message through now and then is still one burst,
    so it gets one notice.
    """
    now = time.monotonic()
    return now + refill, until is None or now >= until
