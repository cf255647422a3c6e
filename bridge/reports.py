"""Chats that just ended, kept a while so that "report" still reaches them: bounded and expiring."""

from __future__ import annotations

import time
from collections import OrderedDict

from .abc import Chat
from .events import Room

__all__ = ["RecentChats"]


class _Recent:
    __slots__ = ("chat", "until")

    def __init__(self, chat: Chat, until: float) -> None:
        self.chat = chat
        self.until = until


class RecentChats:
    """Room → its last ended chat (closed, no task, no session), for at most `window` seconds.

    Held for every room of the process together, never more than `limit` at once: the oldest go
    first. So memory follows live clients, not how many chats ended lately.
    """

    __slots__ = ("window", "limit", "without", "_chats")

    def __init__(self, window: float, limit: int) -> None:
        self.window = window
        self.limit = limit
        self.without: set[str] = set()  # platforms with no "report" after the end: nothing kept
        self._chats: OrderedDict[Room, _Recent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chats)

    def keep(self, room: Room, chat: Chat) -> None:
        """Remember the chat that just ended in `room` (replacing an older one)."""
        now = time.monotonic()
        self._chats.pop(room, None)
        if self.limit <= 0 or room.platform in self.without:
            return
        self._chats[room] = _Recent(chat, now + self.window)
        self._expire(now)
        while len(self._chats) > self.limit:
            self._chats.popitem(last=False)

    def take(self, room: Room) -> Chat | None:
        """The chat that ended in `room` not longer than `window` ago, forgotten once taken."""
        now = time.monotonic()
        self._expire(now)
        recent = self._chats.pop(room, None)
        return recent.chat if recent is not None else None

    def _expire(self, now: float) -> None:
        # Every entry lives `window` seconds and they are kept in order: the expired are in front.
        chats = self._chats
        while chats:
            room, recent = next(iter(chats.items()))
            if recent.until > now:
                return
            del chats[room]
