"""Following the core's moderation log, so each platform's log room also shows what happened elsewhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..hygiene import clean, cut

if TYPE_CHECKING:
    from ..abc import KeyValue
    from .sanctions import Sanctions

__all__ = ["FOLLOW_BATCH", "FOLLOW_EVERY", "SEQ_KEY", "follow_log", "record_entry"]

log = logging.getLogger(__name__)

FOLLOW_EVERY = 5.0  # seconds between two looks at the core's moderation log
FOLLOW_BATCH = 100  # records read per look
SEQ_KEY = "modlog:seq"  # in the platform's own state: the last record it posted (or skipped)


def record_entry(action: str, by: str | None, reason: str, *, own: tuple[str, ...]) -> tuple[str, str] | None:
    """A record of the core's moderation log as (title, rest of the sentence), plain text, or None
    when the platform posted it itself (a report by a user whose key starts with one of `own`, an
    action `by` one of `own`). Says what happened and by which kind of actor, never to whom: no
    subject key is shown. The platform renders the title (bold on Discord) and escapes the rest."""
    if by is not None and by.startswith(own):
        return None
    why = f": {clean(cut(' '.join(reason.split()), 200))}" if reason.strip() else ""
    match action:
        case "report":
            platform = (by or "").partition(":")[0] or "an unknown place"
            return "Report", f" by a user of {clean(platform)[:32]} (a stranger chat there was reported){why}."
        case "strike":
            return "Strike", f": someone reported by several people got a strike{why}."
        case "ban" if by == "strikes":
            return "Ban", f" after strikes{why}."
        case "ban":
            return "Ban", f" by the bridge operator{why}."
        case "unban":
            return "Unban", " by the bridge operator."
    return clean(action)[:32], f"{why}."


async def follow_log(
    sanctions: Sanctions,
    state: KeyValue,
    post: Callable[[tuple[str, str]], Awaitable[None]],
    *,
    own: tuple[str, ...],
    every: float = FOLLOW_EVERY,
) -> None:
    """Post (with `post`) what the core's moderation log records beyond this platform's own posts:
    reports made on other platforms, strikes, bans from strikes and from `stranger-bridge mod`.

    The last handled record is kept in `state`, so a restart neither repeats nor (within the log's
    retention) misses one; history before the first run is not posted. Runs until cancelled.
    """
    raw = await state.get(SEQ_KEY)
    seen = int(raw) if raw is not None and raw.lstrip("-").isdigit() else None
    while True:
        try:
            records = await sanctions.log_records(FOLLOW_BATCH)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the follower
            log.warning("moderation log: reading the core's log failed: %r", exc)
            records = []
        if seen is None:
            seen = records[0].seq if records else -1
            await state.set(SEQ_KEY, str(seen))
        fresh = [r for r in reversed(records) if r.seq > seen]
        if fresh and fresh[0].seq > seen + 1:
            log.warning("moderation log: %d records came too fast to be posted", fresh[0].seq - seen - 1)
        for record in fresh:
            entry = record_entry(record.action, record.by, record.reason, own=own)
            if entry is not None:
                try:
                    await post(entry)
                except Exception as exc:  # noqa: BLE001 - one failed post must not stop the log
                    log.warning("moderation log: posting an entry failed: %r", exc)
        if fresh:
            seen = fresh[-1].seq
            await state.set(SEQ_KEY, str(seen))
        await asyncio.sleep(every)
