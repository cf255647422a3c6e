"""A room's typing indicator as state: at most one call per period, refreshed while anyone types."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["TypingPace"]

log = logging.getLogger(__name__)


class TypingPace:
    """Who types in one room, and the calls that show it (used by `bridge.outbox.Outbox`).

    While anyone types, `call(True)` is made at most once per `every` seconds, and again each
    period as a refresh; with `off`, `call(False)` follows when the last typist stops. A failed
    call is logged and not retried (the indicator is cosmetic). `on_quiet` is called when the
    loop ends (nobody types and nothing is due).
    """

    def __init__(
        self,
        room: Any,
        call: Callable[[bool], Awaitable[None]],
        every: float,
        *,
        off: bool = False,
        on_quiet: Callable[[], None] | None = None,
    ) -> None:
        self.room = room
        self.call = call
        self.every = every
        self.off = off
        self.on_quiet = on_quiet
        self.typists: set[str | None] = set()
        self.task: asyncio.Task | None = None
        self.shown = False  # the last call said "typing"
        self.last = float("-inf")  # monotonic time of the last "typing" call
        self._wake = asyncio.Event()

    @property
    def active(self) -> bool:
        """Someone types, or a call is still to be made (the loop runs)."""
        running = self.task is not None and not self.task.done() and self.task is not asyncio.current_task()
        return bool(self.typists) or running

    def next_allowed(self) -> float:
        """Seconds until a "typing" call would be within the pace again (0: now)."""
        return max(0.0, self.last + self.every - time.monotonic())

    def start(self, label: str | None) -> None:
        """`label` types: show it now (within the pace) and keep it shown while it lasts."""
        self.typists.add(label)
        self._kick()

    def stop(self, label: str | None = None, *, everyone: bool = False) -> None:
        """`label` (or everyone) stopped typing."""
        if everyone:
            self.typists.clear()
        else:
            self.typists.discard(label)
        if not self.typists:
            self._kick()

    def close(self) -> None:
        self.typists.clear()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def _kick(self) -> None:
        self._wake.set()
        if self.task is None or self.task.done():
            if self.typists or (self.off and self.shown):
                self.task = asyncio.get_running_loop().create_task(self._loop(), name=f"typing {self.room}")

    async def _loop(self) -> None:
        try:
            while True:
                self._wake.clear()
                if self.typists:
                    wait = self.next_allowed()
                    if wait <= 0:
                        await self._call(True)
                        continue
                elif self.off and self.shown:
                    await self._call(False)
                    continue
                else:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
        finally:
            if asyncio.current_task() is self.task:
                self.task = None
            if self.on_quiet is not None:
                self.on_quiet()

    async def _call(self, on: bool) -> None:
        if on:
            self.last = time.monotonic()
        self.shown = on
        try:
            await self.call(on)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the indicator is cosmetic: keep the pace, never retry
            log.info("room %s: typing call failed: %s", self.room, type(exc).__name__)
