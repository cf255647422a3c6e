"""Test helpers: a platform that records what it is shown, and bridges built from dict configs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bridge.abc import Platform, PluginConfig
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Event, Message, Room
from bridge.store import MemoryStore, Store


class RecordingConfig(PluginConfig):
    """[platforms.NAME] of the recording platform: nothing but plugin and backend."""

    fail_times: int = 0  # deliver raises this many times first (fault injection)


class RecordingPlatform(Platform):
    """Shows nothing; remembers every delivered event per room, and wakes waiters."""

    Config = RecordingConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown: dict[Room, list[Event]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._fail = self.config.fail_times
        self.open = asyncio.Event()  # cleared by a test: every delivery waits until it is set again
        self.open.set()

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def deliver(self, room: Room, event: Event) -> None:
        await self.open.wait()
        if self._fail > 0:
            self._fail -= 1
            raise ConnectionError("injected delivery failure")
        self.shown[room].append(event)
        async with self._changed:
            self._changed.notify_all()

    def room(self, room_id: str) -> Room:
        return Room(self.name, room_id)

    def send(self, room_id: str, event: Event) -> bool:
        """Act as the user of `room_id`."""
        return self.submit(self.room(room_id), event)

    def events(self, room_id: str, kind: type | None = None) -> list[Event]:
        shown = self.shown[self.room(room_id)]
        return [e for e in shown if kind is None or isinstance(e, kind)]

    async def wait_for(self, room_id: str, predicate: Callable[[Event], bool] | type, timeout: float = 5.0) -> Event:
        """The first event shown in the room (already or later) that matches."""
        test = (lambda e: isinstance(e, predicate)) if isinstance(predicate, type) else predicate
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for event in self.shown[self.room(room_id)]:
                        if test(event):
                            return event
                    await self._changed.wait()

    async def wait_count(self, room_id: str, kind: type, n: int, timeout: float = 5.0) -> list[Event]:
        async with asyncio.timeout(timeout):
            async with self._changed:
                while len(self.events(room_id, kind)) < n:
                    await self._changed.wait()
        return self.events(room_id, kind)


RECORDING = "tests.helpers:RecordingPlatform"


def bare(events):
    """Events (or one event) with the core's message references taken off, to compare with plain ones."""
    if isinstance(events, list):
        return [bare(e) for e in events]
    return dataclasses.replace(events, ref=None) if isinstance(events, Message) else events


def config(data: dict[str, Any] | None = None, **bridge: Any):
    """A validated Config from a dict; `bridge` keys go to [bridge]."""
    data = dict(data or {})
    data.setdefault("platforms", {"rec": {"plugin": RECORDING}})
    data["bridge"] = {**data.get("bridge", {}), **bridge}
    return parse_config(data, env=False)


@contextlib.asynccontextmanager
async def running(data: dict[str, Any] | None = None, store: Store | None = None, **bridge: Any):
    """A started Bridge (memory store unless given) that is stopped on exit."""
    instance = Bridge(config(data, **bridge), store=store or MemoryStore())
    async with instance:
        yield instance
