"""nio's key store as the bot uses it: the SQLite file plus trust files, without a database round per sync batch that saves nothing."""

from __future__ import annotations

from collections.abc import Iterable

from nio.store import DefaultStore

__all__ = ["BotKeyStore"]


class BotKeyStore(DefaultStore):
    """nio's DefaultStore: keys in `<user>_<device>.db`, device trust in small files beside it (read from memory).

    nio saves "the rooms that turned encryption on in this batch" after every /sync, in a transaction
    of its own even when there are none; that empty round cost about a millisecond per batch.
    """

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if rooms:
            super().save_encrypted_rooms(rooms)
