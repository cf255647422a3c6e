"""Typing indicators as state: the newest state wins, and changes are relayed at a bounded pace."""

from __future__ import annotations

__all__ = ["Indicator"]


class Indicator:
    """What the other side has been told about one speaker's typing, and what is still due.

    A start is relayed at most once per `interval` seconds (or once per message); a start that
    comes sooner is held and relayed when the interval is over, if the speaker is still typing
    then. A stop is relayed only after a relayed start. So 100 toggles a second become about one
    start and one stop a second, and the indicator still ends up showing the newest state.
    """

    __slots__ = ("shown_until", "next_start", "held")

    def __init__(self) -> None:
        self.shown_until: float | None = None  # shown as typing until then (then a stop is synthesised)
        self.next_start = 0.0  # no start is relayed before this
        self.held = False  # a start arrived too soon and waits for next_start

    @property
    def shown(self) -> bool:
        return self.shown_until is not None

    def start(self, now: float, timeout: float, interval: float) -> bool:
        """The speaker types. True: relay a start now."""
        if self.shown_until is not None:
            self.shown_until = now + timeout  # still typing: only the time-out moves
            return False
        if now < self.next_start:
            self.held = True
            return False
        self.shown_until = now + timeout
        self.next_start = now + interval
        self.held = False
        return True

    def stop(self) -> bool:
        """The speaker stopped (or sent a message). True: relay a stop now."""
        self.held = False
        if self.shown_until is None:
            return False
        self.shown_until = None
        return True

    def message(self) -> bool:
        """The speaker sent a message, which ends typing: True to relay a stop now. Typing again
        after a message is new news, so it is not held (messages have their own rate limit)."""
        self.next_start = 0.0
        return self.stop()

    def deadline(self) -> float | None:
        """When `due` has something to do, or None."""
        if self.shown_until is not None:
            return self.shown_until
        return self.next_start if self.held else None

    def due(self, now: float, timeout: float, interval: float) -> bool | None:
        """At a deadline: True to relay a start, False to relay a stop, None for nothing."""
        if self.shown_until is not None and now >= self.shown_until:
            self.shown_until = None
            return False
        if self.held and now >= self.next_start:
            return True if self.start(now, timeout, interval) else None
        return None

    def idle(self) -> bool:
        """Nothing shown and nothing held: the indicator can be dropped."""
        return self.shown_until is None and not self.held
