"""The no-JS chats' transcripts in Redis (see plugins.web.nojs_shared): one list of lines per chat, read by any instance's stream."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .shared_lua import NOJS_APPEND, NOJS_BEGIN, NOJS_END, NOJS_READ
from .shared_once import DOWN

if TYPE_CHECKING:
    from .shared import SharedTier

__all__ = ["Transcripts"]

log = logging.getLogger(__name__)


class Transcripts:
    """The transcript `<prefix>web:t:<key>` of each no-JS chat of one web tier, beside the client's record."""

    def __init__(self, tier: SharedTier) -> None:
        self.tier = tier
        redis = tier.redis
        self._append = redis.register_script(NOJS_APPEND)
        self._begin = redis.register_script(NOJS_BEGIN)
        self._read = redis.register_script(NOJS_READ)
        self._end = redis.register_script(NOJS_END)

    def _transcript(self, key: str) -> str:
        return f"{self.tier.prefix}t:{key}"

    def _keys(self, key: str) -> list[str]:
        """The keys of the scripts: the client's record, then its transcript."""
        return [self.tier.record_key(key), self._transcript(key)]

    async def append(
        self, key: str, address: str, lines: list[str], changed: list[tuple[int, str]], *, base: int, final: bool,
    ) -> str | None:
        """Add lines to a no-JS chat's transcript, replace changed ones, drop those before line `base`;
        wakes its open stream. None when the client has no record. Raises DOWN."""
        tier = self.tier
        keys = [*self._keys(key), tier.addresses_key(address), tier.owned_key(tier.instance)]
        args: list[Any] = [tier.ttl_ms, int(final), base, len(lines), *lines]
        for at, html in changed:
            args += [at, html]
        woke = await self._append(keys=keys, args=args)
        if woke is None:
            return None
        if woke:
            tier.wake(woke, key)
        return str(woke)

    async def length(self, key: str) -> int:
        return int(await self.tier.redis.llen(self._transcript(key)))

    async def begin(self, key: str) -> list | None:
        """A new stream of a no-JS chat here (the current one from now); None: no such chat. Raises DOWN."""
        reply = await self._begin(keys=self._keys(key), args=[self.tier.instance, time.time()])
        return reply or None

    async def read(self, key: str, mine: int, pos: int) -> list:
        """What stream `mine` shows next, from line number `pos` (see NOJS_READ). Raises DOWN."""
        return await self._read(keys=self._keys(key), args=[mine, pos, time.time()])

    async def end(self, key: str, mine: int, *, done: bool) -> bool:
        """Stream `mine` closed (`done`: it showed the end, the chat is gone); True if it was the current one."""
        try:
            return bool(await self._end(keys=self._keys(key), args=[mine, time.time(), int(done)]))
        except DOWN as exc:
            log.debug("web: ending a no-JS stream's record failed (%s)", type(exc).__name__)
            return False

    async def streaming(self, key: str, since: float, fresh: float) -> bool:
        """Whether a stream of the chat began after `since`, or one is open and was seen after `fresh`."""
        opened, seen, began = await self.tier.redis.hmget(self.tier.record_key(key), "pi", "s", "g")
        return float(began or 0) > since or bool(opened) and float(seen or 0) > fresh

    async def redrawn(self, key: str, now: float) -> None:
        await self.tier.redis.hset(self.tier.record_key(key), "rd", now)
