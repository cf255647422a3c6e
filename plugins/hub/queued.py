"""The part every hub chat shares: a queue of stranger-side events that ends after a final Disconnected or aclose."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from bridge.abc import Chat
from bridge.events import Disconnected, Event
from bridge.inbox import Inbox

__all__ = ["END", "QueuedChat"]

END = object()  # queued by aclose: the events end


class QueuedChat(Chat):
    """A chat whose events are pushed into it by the hub (the partner's `send`, the pool, a relay)."""

    __slots__ = ("queue", "closed", "take")

    def __init__(self) -> None:
        self.queue: Inbox = Inbox()  # unbounded: the partner's session rate-limits what it sends
        self.closed = False
        self.take: Callable[[Event], bool] | None = None  # the session's, while it feeds (`feed`)

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

    def feed(self, take: Callable[[Event], bool] | None) -> None:
        self.take = take

    def push(self, event: Event) -> None:
        if not self.closed:
            # Straight to the session while nothing is queued before it (order kept), else queued.
            take = self.take
            if take is None or not self.queue.empty() or not take(event):
                self.queue.put_nowait(event)
