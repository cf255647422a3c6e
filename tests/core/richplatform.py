"""A recording platform with its own message ids: it answers every shown stranger line with Posted."""

from __future__ import annotations

import itertools
from typing import Any

from bridge.events import Event, Message, Posted, Room
from tests.helpers import RecordingConfig, RecordingPlatform

__all__ = ["RICH", "RICH_PERSISTENT", "PersistentRichPlatform", "RichConfig", "RichPlatform"]


class RichConfig(RecordingConfig):
    post: bool = True  # answer each shown line with Posted at once; False: the test calls post()


class RichPlatform(RecordingPlatform):
    """Like a Discord or Matrix platform in miniature: stranger lines it shows get ids of its own
    ("NAME-1", "NAME-2", ...), reported with Posted; the ids it handed out are kept per room."""

    Config = RichConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids = itertools.count(1)
        self.ids: dict[Room, dict[str, str]] = {}  # room -> core ref -> this platform's id
        self.unposted: list[tuple[Room, str, str]] = []

    async def deliver(self, room: Room, event: Event) -> None:
        await super().deliver(room, event)
        if type(event) is Message and event.ref is not None:
            pid = f"{self.name}-{next(self._ids)}"
            self.ids.setdefault(room, {})[event.ref] = pid
            if self.config.post:
                self.submit(room, Posted(event.ref, pid))
            else:
                self.unposted.append((room, event.ref, pid))

    def post(self) -> int:
        """Report every line shown so far and not yet reported; returns how many."""
        held, self.unposted = self.unposted, []
        for room, ref, pid in held:
            self.submit(room, Posted(ref, pid))
        return len(held)

    def id_of(self, room_id: str, text: str) -> str:
        """This platform's id of the stranger line `text` shown in the room."""
        room = self.room(room_id)
        for event in self.shown[room]:
            if type(event) is Message and event.text == text and event.ref in self.ids.get(room, {}):
                return self.ids[room][event.ref]
        raise KeyError(text)


RICH = "tests.core.richplatform:RichPlatform"


class PersistentRichPlatform(RichPlatform):
    """RichPlatform whose rooms outlive the process, as Discord threads and Matrix rooms do: its hub
    chats can be resumed, so their reference maps are saved."""

    rooms_persist = True


RICH_PERSISTENT = "tests.core.richplatform:PersistentRichPlatform"
