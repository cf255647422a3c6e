"""The hub's matchmaking, pure and synchronous: waiting tickets in buckets, bounded scans, blocks."""

from __future__ import annotations

import collections
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bridge.events import accepts
from .blocks import Blocks

__all__ = ["Match", "Pool", "Ticket"]

RANDOM, INTERESTS, ASK, ANSWER, GROUP = "random", "interests", "ask", "answer", "group"
# Pairs on cool-down kept at most (about 3.5 MB). Reached only past 330 partings a second for a
# whole minute (a churn flood); the oldest, the nearest to the end of their cool-down, go first.
MAX_COOLING = 20_000


@dataclass(eq=False, slots=True)
class Ticket:
    """One person waiting: what they asked for and where they wait."""

    user: str  # the moderation key: report blocks hold between users
    kind: str  # RANDOM | INTERESTS | ASK | ANSWER | GROUP
    language: str = "en"
    interests: frozenset[str] = frozenset()
    question: str | None = None
    strict: bool = False  # interests only, never a random stranger
    payload: object = None  # the backend's chat
    scope: str | None = None  # where the person starts from ("discord:GUILD", "web"): Start.scope
    accept: tuple[str, ...] = ()  # where a partner may come from (Start.accept); empty: anywhere
    id: int = 0
    since: float = 0.0
    places: list[tuple] = field(default_factory=list)  # keys of the buckets this ticket waits in
    pairing: str = ""  # who the person is to pairing (Start.pairing); "": the same as user

    def __post_init__(self) -> None:
        if not self.pairing:
            self.pairing = self.user


@dataclass(frozen=True, slots=True)
class Match:
    """A conversation formed by the pool. For ASK, members[0] is the asker."""

    kind: str
    members: tuple[Ticket, ...]
    common: tuple[str, ...] = ()
    question: str | None = None


class Pool:
    """Pairs arrivals with waiting tickets. Each arrival looks at a bounded number of candidates
    per bucket it belongs to, so its cost does not grow with the number of people waiting."""

    def __init__(
        self,
        *,
        repair_cooldown: float = 60.0,
        scan_limit: int = 32,
        clock: Callable[[], float] = time.monotonic,
        blocks: Blocks | None = None,
        max_cooling: int = MAX_COOLING,
    ):
        self.repair_cooldown = repair_cooldown
        self.max_cooling = max_cooling
        self.scan_limit = scan_limit
        self.clock = clock
        self._ids = itertools.count(1)
        self._buckets: dict[tuple, OrderedDict[int, Ticket]] = {}
        self.blocks = Blocks() if blocks is None else blocks
        # Pairs that just parted (by `_pair_key`) -> until when they are kept apart. Every entry
        # gets the same cool-down, so the order of insertion (re-set pairs move to the end) is the
        # order of expiry. Under fast churn this holds a cool-down's worth of partings (70,000 in
        # 60 s at 1,200 a second), so an entry is an int and a float, not a frozenset of two keys.
        self._recent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self.waiting = 0
        self.waiting_by_kind: dict[str, int] = dict.fromkeys((RANDOM, INTERESTS, ASK, ANSWER, GROUP), 0)

    # ---- relations between people ------------------------------------------------------------

    def block(self, reporter: str, other: str) -> None:
        """Do not pair these two again (after a report; for as long as Blocks keeps it)."""
        self.blocks.add(reporter, other)

    def parted(self, users: Iterable[str]) -> None:
        """These people just left each other: keep them apart for the cool-down."""
        users = list(users)
        until = self.clock() + self.repair_cooldown
        recent = self._recent
        for a, b in itertools.combinations(users, 2):
            pair = _pair_key(a, b)
            recent[pair] = until
            recent.move_to_end(pair)
        # Expired entries leave from the front: O(1) per parting, however many are cooling down
        # (a rebuild of the whole map on every parting was quadratic under fast churn).
        now = self.clock()
        while recent:
            pair, first = next(iter(recent.items()))
            if first > now and len(recent) <= self.max_cooling:
                break
            del recent[pair]

    def compatible(self, a: Ticket, b: Ticket) -> bool:
        if a.pairing == b.pairing:
            return False
        if (a.accept or b.accept) and not (accepts(a.accept, b.scope) and accepts(b.accept, a.scope)):
            return False  # one of them pairs only inside a guild or with chosen platforms
        # (Each check only where it can refuse: no pair is built while nobody is blocked or cooling down.)
        blocks = self.blocks
        if blocks and a.user != b.user and blocks.holds(frozenset((a.user, b.user))):
            return False
        recent = self._recent
        if recent:
            key = _pair_key(a.pairing, b.pairing)
            until = recent.get(key)
            if until is not None:
                if until > self.clock():
                    return False
                del recent[key]
        return True

    # ---- arrivals ----------------------------------------------------------------------------

    def arrive(self, ticket: Ticket) -> Match | None:
        """Match `ticket` now, or leave it waiting. Returns the conversation formed, if any."""
        ticket.id = next(self._ids)
        ticket.since = self.clock()
        lang = ticket.language
        if ticket.kind == INTERESTS:
            for interest in sorted(ticket.interests):
                other = self._first(("i", lang, interest), [ticket])
                if other is not None:
                    return self._pair(ticket, other)
            for interest in ticket.interests:
                self._wait(ticket, ("i", lang, interest))
            return None
        if ticket.kind == RANDOM:
            other = self._first(("r", lang), [ticket])
            if other is not None:
                return self._pair(ticket, other)
            self._wait(ticket, ("r", lang))
            return None
        if ticket.kind == ASK:
            found = self._several(("a", lang), [ticket], 2)
            if found:
                return self._form(ASK, (ticket, *found), question=ticket.question)
            self._wait(ticket, ("q", lang))
            return None
        if ticket.kind == ANSWER:
            asker = self._first(("q", lang), [ticket])
            if asker is not None:
                partner = self._first(("a", lang), [ticket, asker])
                if partner is not None:
                    return self._form(ASK, (asker, partner, ticket), question=asker.question)
            self._wait(ticket, ("a", lang))
            return None
        if ticket.kind == GROUP:
            found = self._several(("g", lang), [ticket], 2)
            if found:
                return self._form(GROUP, (*found, ticket))
            self._wait(ticket, ("g", lang))
            return None
        raise ValueError(f"unknown ticket kind {ticket.kind!r}")

    def fall_back(self, ticket: Ticket) -> Match | None:
        """An interests ticket waited long enough: it now also takes a random stranger."""
        if not ticket.places or ticket.kind != INTERESTS or ticket.strict:
            return None
        other = self._first(("r", ticket.language), [ticket])
        if other is not None:
            return self._pair(ticket, other)
        self._wait(ticket, ("r", ticket.language))
        return None

    def leave(self, ticket: Ticket) -> None:
        """Stop waiting (the person left, or was matched)."""
        if ticket.places:
            self.waiting -= 1
            self.waiting_by_kind[ticket.kind] -= 1
        for key in ticket.places:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.pop(ticket.id, None)
                if not bucket:  # rare interests must not leave empty buckets behind
                    del self._buckets[key]
        ticket.places = []

    # ---- internals ---------------------------------------------------------------------------

    def _wait(self, ticket: Ticket, key: tuple) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = OrderedDict()
        if not ticket.places:
            self.waiting += 1
            self.waiting_by_kind[ticket.kind] += 1
        bucket[ticket.id] = ticket
        ticket.places.append(key)

    def _candidates(self, key: tuple):
        bucket = self._buckets.get(key)
        if not bucket:
            return ()
        return itertools.islice(bucket.values(), self.scan_limit)

    def _first(self, key: tuple, against: list[Ticket]) -> Ticket | None:
        for other in self._candidates(key):
            if all(self.compatible(other, t) for t in against):
                return other
        return None

    def _several(self, key: tuple, against: list[Ticket], n: int) -> list[Ticket]:
        chosen: list[Ticket] = []
        for other in self._candidates(key):
            if all(self.compatible(other, t) for t in (*against, *chosen)):
                chosen.append(other)
                if len(chosen) == n:
                    return chosen
        return []

    def _pair(self, a: Ticket, b: Ticket) -> Match:
        common = tuple(sorted(a.interests & b.interests))
        return self._form(RANDOM if not common else INTERESTS, (b, a), common=common)

    def _form(self, kind: str, members: tuple[Ticket, ...], common: tuple[str, ...] = (), question: str | None = None) -> Match:
        for member in members:
            self.leave(member)
        return Match(kind, members, common, question)


def _pair_key(a: str, b: str) -> int:
    """The cool-down key of two users, either order. A hash: two pairs that share one (a chance of
    about one in 2**64 per pair) would only keep the other pair apart until the cool-down ends."""
    return hash((a, b) if a < b else (b, a))
