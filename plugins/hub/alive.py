"""When the hub was last alive, kept in its state: a restart within resume_window of it takes its chats up again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bridge.abc import KeyValue

__all__ = ["AliveMark"]

log = logging.getLogger(__name__)


class AliveMark:
    """`key` in `state` holds the wall-clock time of this run's last sign of life, renewed every
    `window / 4` (at most 15 s) and at a stop; `previous` is what the previous run left there."""

    def __init__(self, state: KeyValue, key: str, window: float) -> None:
        self.state = state
        self.key = key
        self.window = window
        self.previous: float | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            self.previous = float(await self.state.get(self.key) or "nan")
        except ValueError:
            self.previous = None
        await self.mark()
        self._task = asyncio.get_running_loop().create_task(self._renew(), name="hub alive")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await self.mark()

    def in_window(self) -> bool:
        """Whether the previous run was alive within `window` seconds of now."""
        seen = self.previous
        return seen is not None and seen == seen and time.time() - seen <= self.window

    async def mark(self) -> None:
        try:
            await self.state.set(self.key, f"{time.time():.3f}")
        except Exception as exc:  # the next run then resumes less; the chats go on now
            log.warning("hub: could not record that it is alive: %s", type(exc).__name__)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(min(15.0, max(0.2, self.window / 4)))
            await self.mark()
