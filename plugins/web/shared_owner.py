"""Redis mode, the owner's side: a client's events into its queue in Redis, one push at a time, kept in memory while Redis is away."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .clients import Client
from .pictures import SharedPictures
from .render import worth_answering
from .shared import DOWN, SharedTier

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["NOTICE", "OwnerQueue"]

log = logging.getLogger(__name__)

NOTICE = ["serverMessage", "Too much at once: some events were not shown."]


class OwnerQueue:
    """The instance that owns a client (its chat runs here) queues the client's events in Redis, where
    any instance's poll takes them; while Redis is away they wait in the client's memory queue, and a
    push whose reply was lost (written perhaps) is settled before the next push or poll."""

    def __init__(self, platform: WebPlatform, tier: SharedTier, pictures: SharedPictures) -> None:
        self.web = platform
        self.tier = tier
        self.pictures = pictures

    async def push(self, client: Client, items: list[list], *, force: bool = False, final: bool = False) -> None:
        """Queue events for a client this instance owns; a client whose end is queued is done here
        (its record keeps the end for whichever instance polls it next)."""
        if not items:
            return
        end = None
        await self.pictures.written(client.key)  # no picture's URL is shown before any instance can serve it
        if not self.tier.down():
            try:
                end = await self._into_redis(client, items, force=force, final=final, news=None)
            except DOWN as exc:
                log.info("web: Redis did not take a client's events (%s); kept here", type(exc).__name__)
        if end is not None:
            # Where this client's sequence goes on should Redis be away (client.base, see SharedApi._from_memory), and
            # how many events it has in Redis (client.pushed): memory is not served ahead of them.
            if end[2]:
                self.web.count("dropped", "queue_full")
            if final:
                self.web.clients.forget(client)
            return
        # Redis is away (or lost the client's record): the events wait here, for this instance's polls.
        clients = self.web.clients
        if clients.push(client, items, force=force):
            self.web.count("dropped", "queue_full")
        self.tier.wake(self.tier.instance, client.key)
        if final:
            clients.settle(client)

    @staticmethod
    def _unkeep(client: Client) -> list[list]:
        """Take the events kept in memory (an acknowledging client's unacknowledged ones first) out of
        it, so no memory poll answers them while they are on their way into Redis."""
        kept = [*(client.sent or ()), *client.queue]
        if kept:
            client.queue = []
            if client.sent is not None:
                client.sent = []
            client.dropped = False
        return kept

    @staticmethod
    def _keep(client: Client, kept: list[list]) -> None:
        """Redis did not take them after all: back in memory, ahead of what came meanwhile."""
        if kept:
            client.queue[:0] = kept

    async def flush(self, client: Client) -> bool:
        """Move the events kept in memory while Redis was away into its queue, after what is there
        (the order they were made in); False when Redis still cannot take them."""
        try:
            end = await self._into_redis(client, [], force=True, final=client.ended, news=True)
        except DOWN:
            end = None
        if end is None:
            return False
        if client.ended:
            self.web.clients.forget(client)
        return True

    async def _into_redis(
        self, client: Client, items: list[list], *, force: bool, final: bool, news: bool | None,
    ) -> tuple[int, int, int] | None:
        """Push the events kept in memory (they go first) and `items` into the client's queue, one push
        of a client at a time: one that settles a failed push (`expect`, see PUSH) must not take another's
        events for that one's. None when the client has no record: the kept events stay in memory. Raises
        DOWN (they stay in memory too, and the push counts as failed: it may have been written)."""
        while client.pushing is not None:
            await asyncio.shield(client.pushing)
        done = client.pushing = asyncio.get_running_loop().create_future()
        kept = self._unkeep(client)
        try:
            shown = [*kept, *items] if kept else items
            end = await self.tier.push(
                client.key, client.address, shown, force=force or bool(kept), final=final,
                news=worth_answering(shown) if news is None else news,
                notice=NOTICE, expect=client.pushed if client.unsure else -1,
            )  # fmt: skip
        except BaseException:
            client.unsure = True  # written perhaps, its reply lost: what it held is kept here too
            self._keep(client, kept)
            raise
        finally:
            client.pushing = None
            done.set_result(None)
        client.unsure = False
        if end is None:
            self._keep(client, kept)
        else:
            client.base, client.pushed = end[0], end[1]
        return end
