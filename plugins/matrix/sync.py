"""The /sync loop: the persisted sync token and seen event ids, backoff while the homeserver is away, gap filling."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, RoomMessagesResponse, SyncResponse

from bridge.abc import KeyValue
from bridge.backoff import Backoff
from bridge.dedupe import SeenIds

from .login import REFUSED_TOKEN

__all__ = ["SYNC_BACKOFF", "Sync", "TokenRefused", "why"]

log = logging.getLogger(__name__)

SYNC_BACKOFF = Backoff(base=0.2, factor=2.5, cap=5.0, attempts=None)  # the daemon waits for the homeserver

class TokenRefused(Exception):
    """The homeserver refused the access token for good; `code` is its error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


HandleBatch = Callable[[SyncResponse, bool], Awaitable[None]]


class Sync:
    """Where the bot is in its sync stream: the token and the event ids already handed in.

    The newest `seen_keep` event ids are persisted (twice as many remembered) to drop a batch
    delivered twice;
    `gap_pages` pages of /messages are fetched to fill a gap in a limited timeline.
    """

    def __init__(
        self,
        state: KeyValue,
        *,
        seen_keep: int = 512,
        gap_pages: int = 5,
        backoff: Backoff = SYNC_BACKOFF,
    ) -> None:
        self.state = state
        self.seen_keep = seen_keep
        self.gap_pages = gap_pages
        self.backoff = backoff
        self.since: str | None = None
        # With encryption, the first /sync of a run asks for the full room state, so nio knows every
        # room's members and encryption before the first send (its room list starts empty).
        self.full_state_first = False
        self.seen: SeenIds[str, None] = SeenIds(2 * seen_keep)

    async def load(self) -> None:
        """Take up the token and seen ids a previous run saved."""
        raw = await self.state.get("sync")
        if not raw:
            return
        data = json.loads(raw)
        self.since = data.get("since")
        self.seen = SeenIds(2 * self.seen_keep, data.get("seen", []))

    async def save(self) -> None:
        """Persist the token and the newest seen ids."""
        seen = self.seen.newest(self.seen_keep)
        await self.state.set("sync", json.dumps({"since": self.since, "seen": seen}))

    def seen_before(self, event_id: str | None) -> bool:
        """True for an event id already handed in; otherwise it is remembered now."""
        return bool(event_id) and not self.seen.first_time(event_id)

    @staticmethod
    def filter() -> dict[str, Any]:
        """What the bot asks /sync for: room timelines, no presence or account data."""
        return {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {"timeline": {"limit": 100}, "account_data": {"types": []}},
        }

    async def run(
        self,
        client: AsyncClient,
        long_poll: float,
        handle: HandleBatch,
        ready: asyncio.Event,
        reachable: Callable[[bool], None] | None = None,
    ) -> None:
        """Sync until cancelled; each batch is handed in (`handle(resp, history)`) before its token is saved.

        `reachable(False)` after a failed /sync, `reachable(True)` after each batch handled.
        """
        retry = self.backoff.retrying()
        first = self.since is None
        full_state = self.full_state_first and not first
        while True:
            timeout = 0 if (first or not ready.is_set()) else int(long_poll * 1000)
            try:
                resp = await client.sync(timeout=timeout, since=self.since, sync_filter=self.filter(), full_state=full_state or None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, timeout: the homeserver is away
                resp = exc
            if not isinstance(resp, SyncResponse):
                code = str(getattr(resp, "status_code", None) or "")
                if code in REFUSED_TOKEN:
                    raise TokenRefused(code)
                asked = getattr(resp, "retry_after_ms", None)
                delay = retry.failed(asked / 1000 if asked else None) or 0.0
                if reachable is not None:
                    reachable(False)
                log.warning("matrix sync failed (%s); retrying in %.1f s", why(resp), delay)
                await asyncio.sleep(delay)
                continue
            retry.succeeded()
            await handle(resp, first)
            first = full_state = False
            # Only now: everything in the batch was handed to the core.
            self.since = resp.next_batch
            await self.save()
            ready.set()
            if reachable is not None:
                reachable(True)

    async def fill_gap(self, client: AsyncClient, rid: str, prev_batch: str | None, events: list[dict]) -> list[dict]:
        """A limited timeline skipped events since our token: fetch them with /messages."""
        if not prev_batch:
            return events
        older: list[dict] = []
        start = prev_batch
        for _ in range(self.gap_pages):
            resp = await client.room_messages(rid, start=start, end=self.since, direction="b", limit=100)
            if not isinstance(resp, RoomMessagesResponse):
                log.warning("matrix: could not fetch missed events (%s)", why(resp))
                break
            older.extend(e.source for e in resp.chunk if isinstance(getattr(e, "source", None), dict))
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        older.reverse()
        return older + events


def why(resp: object) -> str:
    """A short reason for a failed request, for logs (an error code or exception name, never content)."""
    if isinstance(resp, BaseException):
        return type(resp).__name__
    return str(getattr(resp, "message", None) or getattr(resp, "status_code", None) or type(resp).__name__)
