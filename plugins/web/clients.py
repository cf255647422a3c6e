"""Web clients: secret ids, per-client event queues with one long poll each, per-address counts, retired ends."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import Counter, OrderedDict

from bridge.events import Room

from .nojs_html import notice_line
from .pictures import Pictures
from .render import worth_answering
from .rich import Book

__all__ = ["Client", "Clients", "Retired"]

ID_BYTES = 24  # 192 random bits; the id is the client's only credential
ID_LENGTH = 32  # characters of token_urlsafe(ID_BYTES)
MAX_RETIRED = 10_000  # ended clients whose last events wait for one more poll, at most


class Retired:
    """What is left of a client whose chat ended while it was between polls: its last events,
    fetched by its next poll (then dropped), or dropped after a while unfetched."""

    __slots__ = ("secret", "events", "base", "seen", "until")

    def __init__(self, secret: str, events: list[list], base: int | None, seen: float, until: float) -> None:
        self.secret = secret
        self.events = events
        self.base = base  # acknowledging clients: the sequence number of events[0]; else None
        self.seen = seen  # when the client was last seen (shutdown waits for active ones)
        self.until = until


class Client:
    """One client id: its room key, what it is waiting to be told, its open long poll."""

    __slots__ = (
        "secret", "key", "address", "spy", "wants_likes", "queue", "waiter", "last_seen", "ended", "dropped",
        "nojs", "chatting", "sent", "base", "leaving", "transcript", "settings", "stream",
        "answered", "rich", "book", "redrawn", "pushed", "fetched", "unsure", "pushing", "room",
    )

    def __init__(
        self, secret: str, key: str, address: str, *, spy: bool, wants_likes: bool, nojs: bool = False,
        rich: bool = False,
    ) -> None:
        self.secret = secret
        self.key = key  # room id and index key: a keyed hash of the secret, never the secret
        self.address = address
        self.spy = spy
        self.wants_likes = wants_likes
        self.queue: list[list] = []  # a list, not a deque: thousands idle at once, mostly empty
        self.waiter: asyncio.Future | None = None
        self.last_seen = time.monotonic()
        self.ended = False  # the chat's last event is queued; the id dies once it is fetched
        self.dropped = False  # the queue overflowed; the client is told once
        self.nojs = nojs  # a no-JavaScript stream: the queue holds ["line", html] items
        self.chatting = False  # connected to a stranger (no-JS: own messages are echoed only then)
        # Our own pages acknowledge what they have shown (`ack`, a parameter Omegle clients never
        # send): for them, events answered but not yet acknowledged stay in `sent`, from sequence
        # number `base` on, and are answered again until acknowledged. None: a plain Omegle client.
        self.sent: list[list] | None = None
        self.base = 0
        self.leaving: asyncio.TimerHandle | None = None  # a page that went away leaves when this fires
        # No-JS: every line shown so far (a reloaded page shows them again), the start form's
        # settings, and which of the client's streams is the current one.
        self.transcript: list[str] | None = [] if nojs else None  # None: thousands idle, nothing allocated
        self.settings: dict[str, str] | None = None
        self.stream = 0
        self.redrawn = 0.0  # no-JS: when the page was last told to redraw itself (event loop time)
        # Rich relay: whether the client takes the extension events (our pages), and its lines'
        # ids (made on the first message, so thousands of idle clients allocate nothing).
        self.rich = rich or nojs
        self.book: Book | None = None
        self.answered = False  # the start was answered (waiting, connected, an end) or the client acted since
        # Redis mode: events ever queued in Redis for the client, and how many of them this instance's
        # polls are known to have fetched; while they differ, events kept in memory (Redis away) wait.
        self.pushed = self.fetched = 0
        self.unsure = False  # a push to Redis failed: it may have been written all the same (see OwnerQueue._into_redis)
        self.pushing: asyncio.Future[None] | None = None  # a push into Redis on its way (one at a time)
        self.room: Room | None = None  # the client's room, made at its first action (WebPlatform.room)

    def lines(self) -> Book:
        """The client's line ids (made on first use)."""
        if self.book is None:
            self.book = Book(track=self.rich)
        return self.book

    def stay(self) -> None:
        """The client came back (a reloaded page polls again): it does not leave after all."""
        if self.leaving is not None:
            self.leaving.cancel()
            self.leaving = None

    @property
    def acking(self) -> bool:
        return self.sent is not None

    def acknowledge(self, n: int) -> bool:
        """Forget the events before sequence number `n`; False if `n` is not one we answered."""
        assert self.sent is not None
        if not self.base <= n <= self.base + len(self.sent):
            return False
        del self.sent[: n - self.base]
        self.base = n
        return True

    def wake(self) -> None:
        """Resolve the open long poll, if any, so it looks at the queue again."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def has_answer(self) -> bool:
        """Whether a poll would be answered now (an acknowledging client's unacknowledged events too)."""
        return bool(self.sent) or self.has_news()

    def has_news(self) -> bool:
        """Whether events worth a poll's answer were never answered yet."""
        return bool(self.queue) and worth_answering(self.queue)

    def take(self) -> list[list]:
        """The queued events (an acknowledging client's answer: every unacknowledged one)."""
        batch, self.queue = self.queue, []
        self.dropped = False
        if self.sent is not None:
            self.sent.extend(batch)
            return list(self.sent)
        return batch

    async def wait(self, timeout: float) -> bool:
        """Wait until woken (True), or until `timeout` passes or a newer poll of this client
        takes over (False)."""
        fut = asyncio.get_running_loop().create_future()
        previous, self.waiter = self.waiter, fut
        if previous is not None and not previous.done():
            previous.set_result(None)  # one open poll per client: the older one answers `null`
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            if self.waiter is fut:
                self.waiter = None
            elif not fut.done():
                fut.cancel()
        return self.waiter is None or self.waiter is fut


class Clients:
    """Every live client, indexed by a keyed hash of its id so lookups never compare secrets
    with `==` (the final check is hmac.compare_digest)."""

    def __init__(self, max_queue: int = 1000, *, keep_retired: float = 60.0, max_retired: int = MAX_RETIRED) -> None:
        self.max_queue = max_queue
        self.keep_retired = keep_retired  # seconds an unfetched end is kept
        self.max_retired = max_retired
        self._salt = secrets.token_bytes(16)
        self.by_key: dict[str, Client] = {}
        self.sessions = Counter[str]()  # live ids per address
        self.polls = Counter[str]()  # open long polls per address
        self.retired: OrderedDict[str, Retired] = OrderedDict()  # key → last events, oldest first
        self.pictures = Pictures()  # pictures shown to live clients (they go with the client)

    def __len__(self) -> int:
        return len(self.by_key)

    def _key(self, secret: str) -> str:
        return hashlib.blake2b(secret.encode("utf-8", "replace"), key=self._salt, digest_size=16).hexdigest()

    def key_of(self, secret: str) -> str:
        """The keyed hash of `secret` (a client id, or an address counted under it)."""
        return self._key(secret)

    def share_salt(self, salt: bytes) -> None:
        """Use the salt every instance shares (Redis mode: a key means the same client everywhere)."""
        assert not self.by_key, "the salt is set before any client exists"
        self._salt = salt

    def adopt(self, key: str, address: str, *, spy: bool, wants_likes: bool, rich: bool) -> Client:
        """A client a previous run of this instance started, taken back from its shared record:
        its secret is known only by its keyed hash (which is how it is found)."""
        client = Client("", key, address, spy=spy, wants_likes=wants_likes, rich=rich)
        self.by_key[key] = client
        self.sessions[address] += 1
        return client

    def create(
        self, address: str, *, spy: bool = False, wants_likes: bool = False, nojs: bool = False, rich: bool = False
    ) -> Client:
        """A new client with a fresh secret id from `secrets`."""
        secret = secrets.token_urlsafe(ID_BYTES)
        client = Client(secret, self._key(secret), address, spy=spy, wants_likes=wants_likes, nojs=nojs, rich=rich)
        self.by_key[client.key] = client
        self.sessions[address] += 1
        return client

    def find(self, secret: str | None) -> Client | None:
        """The client whose id is `secret`, or None. Constant time in the secret's content."""
        if not secret or len(secret) != ID_LENGTH:
            return None
        client = self.by_key.get(hashlib.blake2b(secret.encode("utf-8", "replace"), key=self._salt, digest_size=16).hexdigest())
        if client is None or (client.secret and not hmac.compare_digest(client.secret.encode(), secret.encode("utf-8", "replace"))):
            return None  # an adopted client ("" secret) is known by the keyed hash alone
        return client  # (_key and _same written out: every request passes here)

    def claim(self, secret: str | None, ack: int | None = None) -> Retired | None:
        """The retired end of the client whose id is `secret`, or None. A plain client's is removed
        (it is shown once); an acknowledging client's stays, trimmed to `ack`, until it expires."""
        record = self._retired(secret)
        if record is None:
            return None
        if record.base is None:
            return self.retired.pop(self._key(record.secret))
        if ack is None or not record.base <= ack <= record.base + len(record.events):
            return None
        del record.events[: ack - record.base]
        record.base = ack
        return record if record.events else None

    def discard(self, secret: str | None) -> bool:
        """Drop the retired end of the client whose id is `secret`; False if there is none."""
        record = self._retired(secret)
        if record is not None:
            del self.retired[self._key(record.secret)]
        return record is not None

    def _retired(self, secret: str | None) -> Retired | None:
        if not secret or len(secret) != ID_LENGTH:
            return None
        record = self.retired.get(self._key(secret))
        return record if record is not None and _same(record.secret, secret) else None

    def settle(self, client: Client) -> None:
        """Retire a client whose chat ended while no poll of it is open: the client goes at once
        (its id and its per-address count with it); only its undelivered last events stay, in a
        small bounded record, for its next poll."""
        if not client.ended or client.waiter is not None or client.nojs or self.by_key.get(client.key) is not client:
            return
        self._retire(client)

    def _retire(self, client: Client) -> None:
        events, seen = client.queue, client.last_seen
        if client.sent is not None:
            events = client.sent + events
        self.forget(client)
        if events:
            base = client.base if client.sent is not None else None
            self.retired[client.key] = Retired(client.secret, events, base, seen, time.monotonic() + self.keep_retired)
            while len(self.retired) > self.max_retired:
                self.retired.popitem(last=False)

    def expire(self, now: float) -> None:
        """Drop retired ends nobody fetched in time (oldest first: they expire in order)."""
        while self.retired:
            key, record = next(iter(self.retired.items()))
            if record.until > now:
                return
            del self.retired[key]

    def get(self, key: str) -> Client | None:
        """The client of a room id."""
        return self.by_key.get(key)

    def forget(self, client: Client) -> bool:
        """Drop a client for good; its open long poll is answered. False if already gone."""
        if self.by_key.get(client.key) is not client:
            return False
        del self.by_key[client.key]
        self.pictures.drop(client.key)
        client.stay()
        self.sessions[client.address] -= 1
        if self.sessions[client.address] <= 0:
            del self.sessions[client.address]
        client.ended = True
        client.wake()
        return True

    def take(self, client: Client) -> list[list]:
        """The client's pending batch; a client whose chat's end is in it is forgotten (its id is
        dead), an acknowledging one retired (its end is answered again until acknowledged)."""
        batch = client.take()
        if client.ended:
            if client.sent is not None:
                self._retire(client)  # the queue is empty: its events are in `sent`
            else:
                self.forget(client)
        return batch

    def push(self, client: Client, items: list[list], *, force: bool = False) -> int:
        """Queue protocol events for a client (bounded unless `force`: the end of a chat is
        always queued) and wake its long poll. Returns how many were dropped (the queue was full)."""
        if not items:
            return 0
        if not force and len(client.queue) + len(items) > self.max_queue:
            if not client.dropped:
                client.dropped = True
                text = "Too much at once: some events were not shown."
                client.queue.append(["line", notice_line(text)] if client.nojs else ["serverMessage", text])
                client.wake()
            return len(items)
        client.queue.extend(items)
        client.wake()
        return 0

    def stale(self, now: float, timeout: float) -> list[Client]:
        """Clients with no open long poll that were last seen more than `timeout` seconds ago."""
        return [c for c in self.by_key.values() if c.waiter is None and now - c.last_seen > timeout]


def _same(secret: str, given: str) -> bool:
    return hmac.compare_digest(secret.encode(), given.encode("utf-8", "replace"))
