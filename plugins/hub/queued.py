"""The part every hub chat shares: a queue of stranger-side events that ends after a final Disconnected or aclose."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bridge.abc import Chat
from bridge.events import Disconnected, Event
from bridge.inbox import Inbox

__all__ = ["END", "QueuedChat"]

END = object()  # queued by aclose: the events end


class QueuedChat(Chat):
    """A chat whose events are pushed into it by the hub (the partner's `send`, the pool, a relay)."""

    __slots__ = ("queue", "closed")

    def __init__(self) -> None:
        self.queue: Inbox = Inbox()  # unbounded: the partner's session rate-limits what it sends
        self.closed = False

    async def events(self) -> AsyncIterator[Event]:
        queue = self.queue
        while True:
            event = await queue.get()
            if event is END:
                return
            yield event
            if type(event) is Disconnected and event.final:
                return
            del event  # an idle chat holds no event it has passed on (thousands of chats wait so)

    def push(self, event: Event) -> None:
        if not self.closed:
            self.queue.put_nowait(event)
