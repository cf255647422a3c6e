"""Bans, reports and strikes kept in the store, and the bounded moderation log."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field

from ..store import Store
from .subjects import is_glob
from .timespan import format_duration

__all__ = [
    "Ban",
    "LogRecord",
    "NAMESPACE",
    "ReportOutcome",
    "Sanctions",
    "ban_notice",
]

log = logging.getLogger(__name__)

NAMESPACE = "policy"  # the store namespace of everything below
MAX_REPORTED = 200  # distinct subjects remembered per reporter (enough to weigh a serial reporter)
MAX_REASON = 200
@dataclass(frozen=True, slots=True)
class Ban:
    """A ban of one subject key (or Matrix glob); `until` None means until lifted."""

    key: str
    reason: str
    since: float
    until: float | None
    by: str = "operator"  # "operator" (CLI, admin command) or "strikes" (reports)

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What one report led to."""

    recorded: bool  # False when the reporter had already reported this subject inside the window
    strike: bool = False
    ban: Ban | None = None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One moderation log line: never a stranger-side identifier, never message text."""

    seq: int
    time: float
    action: str  # "report", "strike", "ban", "unban"
    subject: str | None  # a subject key (hashed for Discord and Matrix) or a Matrix glob
    reason: str = ""
    by: str | None = None  # who acted: "operator", "strikes", or the reporter's key


@dataclass(slots=True)
class _Subject:
    ban: dict | None = None
    strikes: int = 0
    strike_at: float = 0.0
    reports: dict[str, float] = field(default_factory=dict)  # reporter key -> time

    @classmethod
    def load(cls, raw: str | None) -> _Subject:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str | None:
        if self.ban is None and not self.strikes and not self.reports:
            return None  # nothing left to remember: the key is deleted
        return json.dumps(asdict(self), separators=(",", ":"))


def ban_notice(ban: Ban, now: float) -> str:
    """The plain notice a banned user gets when they try to start."""
    reason = f" Reason: {ban.reason}." if ban.reason else ""
    if ban.until is None:
        return f"You are banned from starting chats on this bridge.{reason}"
    return f"You are banned from starting chats on this bridge for {format_duration(ban.until - now)} more.{reason}"


class Sanctions:
    """Bans, strikes and reports over the store's key/value interface.

    Every subject's data is one record under its own key, changed only through `Store.update`
    (compare-and-set, retried): two instances sharing a Redis, or `stranger-bridge mod` beside a
    daemon, never lose each other's report, strike or ban. Within this process one lock per key
    keeps its own tasks from retrying against each other. Bans are read from the store on every
    check, so a ban written by `stranger-bridge mod` into the state file of a running daemon
    applies at the next start.
    """

    def __init__(
        self, store: Store, *, report_threshold: float = 3.0, report_window: float = 86400.0,
        strike_ttl: float = 30 * 86400.0, ban_steps: tuple[float, ...] = (3600.0, 86400.0, 7 * 86400.0),
        log_size: int = 1000, log_retention: float = 30 * 86400.0, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        if report_threshold < 2:
            raise ValueError("report_threshold must be at least 2: one reporter alone must never cause a strike")
        self.store = store
        self.report_threshold = report_threshold
        self.report_window = report_window
        self.strike_ttl = strike_ttl
        self.ban_steps = tuple(ban_steps)
        self.log_size = log_size
        self.log_retention = log_retention
        self.clock = clock
        self._locks: dict[str, list] = {}  # key -> [lock, holders and waiters]

    @classmethod
    def from_config(cls, store: Store, policy, clock: Callable[[], float] = time.time) -> Sanctions:
        """Built from a PolicySection ([policy])."""
        return cls(
            store, report_threshold=policy.report_threshold, report_window=policy.report_window,
            strike_ttl=policy.strike_ttl, ban_steps=policy.ban_steps, log_size=policy.log_size,
            log_retention=policy.log_retention, clock=clock,
        )  # fmt: skip

    # ---- bans -------------------------------------------------------------------------------

    async def check(self, key: str, *, server: str | None = None) -> Ban | None:
        """The active ban of `key` (or of a Matrix server glob matching `server`), or None."""
        now = self.clock()
        record = _Subject.load(await self.store.get(NAMESPACE, f"s:{key}"))
        if record.ban is not None:
            ban = Ban(key=key, **record.ban)
            if ban.active(now):
                return ban
        if server is not None:
            for glob, data in (await self._globs()).items():
                ban = Ban(key=glob, **data)
                if ban.active(now) and fnmatch.fnmatchcase(server.lower(), glob.removeprefix("matrix:*:")):
                    return ban
        return None

    async def ban(self, key: str, duration: float | None, reason: str = "", *, by: str = "operator") -> Ban:
        """Ban `key` for `duration` seconds (None: until lifted); replaces an earlier ban."""
        now = self.clock()
        reason = reason.strip()[:MAX_REASON]
        ban = Ban(key, reason, now, None if duration is None else now + duration, by)
        data = {"reason": ban.reason, "since": ban.since, "until": ban.until, "by": ban.by}
        if is_glob(key):

            def add_glob(raw: str | None) -> tuple[str | None, None]:
                globs = json.loads(raw) if raw else {}
                globs[key] = data
                return json.dumps(globs), None

            async with self._lock("globs"):
                await self.store.update(NAMESPACE, "globs", add_glob)
        else:

            def add_ban(raw: str | None) -> tuple[str | None, None]:
                record = _Subject.load(raw)
                record.ban = data
                return record.dump(), None

            async with self._lock(f"s:{key}"):
                await self.store.update(NAMESPACE, f"s:{key}", add_ban)
            await self._index(key, add=True)
        await self._log("ban", key, reason, by)
        return ban

    async def unban(self, key: str, *, by: str = "operator") -> bool:
        """Lift the ban of `key`; False if there was none. Strikes stay (they expire on their own)."""
        if is_glob(key):

            def drop_glob(raw: str | None) -> tuple[str | None, bool]:
                globs = json.loads(raw) if raw else {}
                found = globs.pop(key, None) is not None
                return (json.dumps(globs) if globs else None) if found else raw, found

            async with self._lock("globs"):
                found = await self.store.update(NAMESPACE, "globs", drop_glob)
        else:

            def drop_ban(raw: str | None) -> tuple[str | None, bool]:
                record = _Subject.load(raw)
                if record.ban is None:
                    return raw, False
                record.ban = None
                return record.dump(), True

            async with self._lock(f"s:{key}"):
                found = await self.store.update(NAMESPACE, f"s:{key}", drop_ban)
        if found:
            await self._log("unban", key, "", by)
        return found

    async def listing(self) -> list[tuple[str, Ban | None, int]]:
        """Every subject with an active ban or live strikes: (key, ban or None, strikes)."""
        now = self.clock()
        out: list[tuple[str, Ban | None, int]] = []
        gone: list[str] = []
        for key in await self._keys():
            record = _Subject.load(await self.store.get(NAMESPACE, f"s:{key}"))
            ban = Ban(key=key, **record.ban) if record.ban is not None else None
            ban = ban if ban is not None and ban.active(now) else None
            strikes = record.strikes if record.strike_at + self.strike_ttl > now else 0
            if not self._live(record, now):
                gone.append(key)
            else:
                out.append((key, ban, strikes))
        for glob, data in (await self._globs()).items():
            ban = Ban(key=glob, **data)
            if ban.active(now):
                out.append((glob, ban, 0))
        for key in gone:
            await self._index(key, add=False)
        return out

    # ---- reports and strikes ----------------------------------------------------------------

    async def report(self, reporter: str, reported: str | None, reason: str = "") -> ReportOutcome:
        """Record a report by `reporter` (a user key) against `reported` (None: the backend gives no key).

        A report counts with the reporter's weight, 1 / (distinct subjects they reported inside
        the window), so someone who reports everyone weighs almost nothing; reports whose weights
        add up to `report_threshold` inside the window make a strike, and each strike bans for
        the next of `ban_steps`. One reporter alone never reaches the threshold.
        """
        now = self.clock()
        if reported == reporter:
            return ReportOutcome(False)
        # An unknown stranger still counts as somebody reported, so the reporter's weight falls.
        target = reported if reported is not None else f"?{secrets.token_hex(8)}"
        recorded = await self._remember_reported(reporter, target, now)
        await self._log("report", reported, reason[:MAX_REASON], reporter)
        if reported is None or not recorded:
            return ReportOutcome(recorded)
        subject = reported

        async def add_report(raw: str | None) -> tuple[str | None, tuple[int, Ban | None]]:
            record = _Subject.load(raw)
            horizon = now - self.report_window
            record.reports = {r: t for r, t in record.reports.items() if t > horizon and r != reporter}
            record.reports[reporter] = now
            weight = 0.0
            for someone in record.reports:
                weight += 1.0 / max(1, await self._distinct_reported(someone, now))
            if weight < self.report_threshold - 1e-9:
                return record.dump(), (0, None)
            record.strikes = (record.strikes if record.strike_at + self.strike_ttl > now else 0) + 1
            record.strike_at = now
            record.reports = {}
            duration = self.ban_steps[min(record.strikes, len(self.ban_steps)) - 1]
            until = now + duration
            if record.ban is not None and (record.ban["until"] is None or record.ban["until"] > until):
                until = record.ban["until"]  # never shorten a longer ban already in force
            reason = f"reported by several people (strike {record.strikes})"
            record.ban = {"reason": reason, "since": now, "until": until, "by": "strikes"}
            return record.dump(), (record.strikes, Ban(subject, reason, now, until, "strikes"))

        async with self._lock(f"s:{reported}"):
            strikes, ban = await self.store.update(NAMESPACE, f"s:{reported}", add_report)
        if ban is not None:
            await self._index(reported, add=True)
            await self._log("strike", reported, f"strike {strikes}", "strikes")
            await self._log("ban", reported, ban.reason, "strikes")
        return ReportOutcome(True, ban is not None, ban)

    async def _remember_reported(self, reporter: str, target: str, now: float) -> bool:
        def add_reported(raw: str | None) -> tuple[str | None, bool]:
            reported: dict[str, float] = json.loads(raw) if raw else {}
            horizon = now - self.report_window
            reported = {k: t for k, t in reported.items() if t > horizon}
            fresh = target not in reported
            reported[target] = now
            if len(reported) > MAX_REPORTED:
                reported = dict(sorted(reported.items(), key=lambda kv: kv[1])[-MAX_REPORTED:])
            return json.dumps(reported, separators=(",", ":")), fresh

        async with self._lock(f"r:{reporter}"):
            return await self.store.update(NAMESPACE, f"r:{reporter}", add_reported)

    async def _distinct_reported(self, reporter: str, now: float) -> int:
        raw = await self.store.get(NAMESPACE, f"r:{reporter}")
        horizon = now - self.report_window
        return sum(1 for t in (json.loads(raw) if raw else {}).values() if t > horizon)

    # ---- the moderation log -----------------------------------------------------------------

    async def _log(self, action: str, subject: str | None, reason: str, by: str | None) -> None:
        # The sequence number is taken in one atomic step of the store: instances sharing a Redis
        # (and `stranger-bridge mod` beside a daemon) never give two records the same number.
        seq = await self.store.add(NAMESPACE, "log:next") - 1
        record = LogRecord(seq, self.clock(), action, subject, reason, by)
        await self.store.set(NAMESPACE, f"log:{seq % self.log_size}", json.dumps(asdict(record)))
        log.info("moderation: %s", action)

    async def log_records(self, limit: int | None = None) -> list[LogRecord]:
        """The retained log, newest first (at most `log_size` records, none older than `log_retention`)."""
        now = self.clock()
        last = int(await self.store.get(NAMESPACE, "log:next") or 0)
        out: list[LogRecord] = []
        for seq in range(last - 1, max(-1, last - 1 - self.log_size), -1):
            if limit is not None and len(out) >= limit:
                break
            raw = await self.store.get(NAMESPACE, f"log:{seq % self.log_size}")
            if raw is None:
                break
            record = LogRecord(**json.loads(raw))
            if record.seq != seq or record.time < now - self.log_retention:
                break  # overwritten by a newer ring, or past retention: everything older is too
            out.append(record)
        return out

    # ---- bookkeeping ------------------------------------------------------------------------

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1  # holders and waiters: the lock is dropped only when nobody needs it
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]  # idle locks are not kept: one per subject would grow forever

    def _live(self, record: _Subject, now: float) -> bool:
        """Whether a subject's record holds an active ban or live strikes (what `listing` shows)."""
        ban = record.ban
        return (ban is not None and (ban["until"] is None or ban["until"] > now)) or (
            bool(record.strikes) and record.strike_at + self.strike_ttl > now
        )

    async def _globs(self) -> dict[str, dict]:
        raw = await self.store.get(NAMESPACE, "globs")
        return json.loads(raw) if raw else {}

    async def _keys(self) -> list[str]:
        raw = await self.store.get(NAMESPACE, "index")
        return json.loads(raw) if raw else []

    async def _index(self, key: str, *, add: bool) -> None:
        # Only `mod list` reads the index; the truth is in each subject's own record. A key is
        # written to its record before it is added here, and taken out here before its record is
        # looked at again: an instance banning it meanwhile never finds it missing from the index.
        def change(raw: str | None) -> tuple[str | None, None]:
            keys = json.loads(raw) if raw else []
            if add and key not in keys:
                keys.append(key)
            elif not add and key in keys:
                keys.remove(key)
            else:
                return raw, None
            return (json.dumps(keys) if keys else None), None

        async with self._lock("index"):
            await self.store.update(NAMESPACE, "index", change)
        if not add and self._live(_Subject.load(await self.store.get(NAMESPACE, f"s:{key}")), self.clock()):
            await self._index(key, add=True)
