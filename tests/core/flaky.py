"""A recording platform that cannot show some messages: every delivery of a text containing a
configured word fails, as a platform whose API refuses a message would."""

from __future__ import annotations

from bridge.events import Event, Message, Room
from tests.helpers import RecordingConfig, RecordingPlatform


class FlakyConfig(RecordingConfig):
    refuse: str = "poison"  # a Message whose text contains this is never shown


class FlakyPlatform(RecordingPlatform):
    Config = FlakyConfig

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused_attempts = 0

    async def deliver(self, room: Room, event: Event) -> None:
        if isinstance(event, Message) and self.config.refuse in event.text:
            self.refused_attempts += 1
            raise ConnectionResetError("injected: the platform refused this message")
        await super().deliver(room, event)


FLAKY = "tests.core.flaky:FlakyPlatform"
