"""The part every hub chat shares: a queue of stranger-side events that ends after a final Disconnected or aclose."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bridge.abc import Chat, Taker
from bridge.events import Disconnected, Event
from bridge.inbox import Inbox

__all__ = ["END", "QueuedChat"]

END = object()  # queued by aclose: the events end


class QueuedChat(Chat):
    """A chat whose events are pushed into it by the hub (the partner's `send`, the pool, a relay)."""

    __slots__ = ("queue", "closed", "taker")

    def __init__(self) -> None:
        self.queue: Inbox = Inbox()  # unbounded: the partner's session rate-limits what it sends
        self.closed = False
        self.taker: Taker | None = None  # the session, while it is fed (`feed`)

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

    def feed(self, taker: Taker | None) -> None:
        self.taker = taker

    def push(self, event: Event) -> None:
        if not self.closed:
            # Straight to the session while nothing is queued before it (order kept), else queued.
            taker = self.taker
            if taker is None or not self.queue.empty() or not taker.take(event):
                self.queue.put_nowait(event)
