"""The web tier in Redis mode: client records and event queues in Redis, polls on any instance, actions forwarded to the owner."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rx

from .shared_once import DOWN, Once, WebRelay, redis_ms
from .shared_lua import END_POLL, GIVE_BACK, POLL_SLOT, PUSH, TAKE
from .shared_transcripts import Transcripts

__all__ = ["DOWN", "Record", "SharedTier", "Taken"]

log = logging.getLogger(__name__)

FORWARD_WAIT = 3.0  # seconds an action forwarded to its client's owner waits for the owner's answer
RECHECK = 5.0  # seconds a waiting poll looks at its queue again even when no wake came (a wake lost)
EXPIRY_MARGIN = 1.0  # seconds an expiring forwarded action must be applied before its asker stops waiting
UPLOAD_CLAIM = 60.0  # seconds at most one client's upload holds its claim (its end releases it)


@dataclass(frozen=True, slots=True)
class Record:
    """What any instance knows of a client from Redis."""

    key: str
    owner: str
    ended: bool
    acking: bool
    rich: bool
    spy: bool
    likes: bool
    seen: float
    nojs: bool = False  # a no-JavaScript chat (its lines are a transcript: see plugins.web.nojs_shared)


@dataclass(frozen=True, slots=True)
class Taken:
    """The outcome of a take: `status` ok (events, from sequence number `base`), empty, superseded, unknown, badack."""

    status: str
    base: int = 0
    ended: bool = False
    previous: str = ""
    acking: bool = False
    total: int = 0  # events ever queued for the client when it was taken (all of them were then fetched)
    events: list[list] = dataclasses.field(default_factory=list)


class SharedTier:
    """Client records, queues and wakes in Redis for one web platform.

    A client is owned by the instance that served its /start (its session runs there, covered by
    that instance's lease). The owner appends the client's events to `<prefix>web:q:<key>`; any
    instance answers a poll by one atomic take from it, so two polls never get one event; the
    record `<prefix>web:c:<key>` says who owns the client and which instance holds its open poll,
    whom the owner wakes through the relay. Actions that reach another instance are forwarded to
    the owner through the same relay and take effect there, in order.
    """

    def __init__(
        self, store: Any, *, name: str, ttl: float, retired: float, max_queue: int, handle: Callable[[dict[str, Any]], None],
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.prefix = f"{store.prefix}web:{name}:"
        self.instance: str = store.instance
        self.ttl_ms = int(ttl * 1000)
        self.retired_ms = int(retired * 1000)
        self.max_queue = max_queue
        self.handle = handle
        self.once = Once(store.redis, f"{self.prefix}applied:{self.instance}", handle)
        self.relay = WebRelay(store.redis, prefix=self.prefix, instance=self.instance, handle=self._on_envelope, settle=self.once.settle)
        self.waiters: dict[str, asyncio.Future[None]] = {}  # client key -> the poll of it open on this instance
        self.answers: dict[str, asyncio.Future[tuple[int, str]]] = {}  # forwarded actions waiting for the owner
        self.silent: set[str] = set()  # owners that did not answer a forwarded action in time (restarting)
        self._push = self.redis.register_script(PUSH)
        self._take = self.redis.register_script(TAKE)
        self._end_poll = self.redis.register_script(END_POLL)
        self._give_back = self.redis.register_script(GIVE_BACK)
        self._poll_slot = self.redis.register_script(POLL_SLOT)
        self.transcripts = Transcripts(self)  # the no-JS chats' lines

    def down(self) -> bool:
        """Whether Redis is known to be unreachable now (calls would fail: the owner serves from memory)."""
        return self.store.problem() is not None

    # ---- keys --------------------------------------------------------------------------------

    def record_key(self, key: str) -> str:
        return f"{self.prefix}c:{key}"

    def queue_key(self, key: str) -> str:
        return f"{self.prefix}q:{key}"

    def addresses_key(self, hashed: str) -> str:
        return f"{self.prefix}a:{hashed}"

    def owned_key(self, instance: str) -> str:
        return f"{self.prefix}o:{instance}"

    def polls_key(self, hashed: str) -> str:
        return f"{self.prefix}p:{hashed}"

    async def salt(self) -> bytes:
        """The salt of client keys, made by the first instance to ask (SET NX), the same for all."""
        key = f"{self.prefix}salt"
        await self.redis.set(key, secrets.token_hex(16), nx=True)
        return bytes.fromhex(await self.redis.get(key))

    async def start(self) -> None:
        await self.once.start()
        await self.relay.start()

    async def stop(self) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_result(None)
        await self.relay.drain(2.0)
        await self.relay.close()
        await self.once.stop()

    # ---- records -----------------------------------------------------------------------------

    async def create(
        self, key: str, address: str, *, spy: bool, likes: bool, rich: bool, acking: bool, nojs: dict[str, str] | None = None,
    ) -> None:
        """The record of a client this instance just started (it owns it), counted against its address;
        `nojs`: a no-JS chat, with the start form's settings (its page shows them)."""
        fields = {
            "key": key, "o": self.instance, "a": address, "k": int(acking), "r": int(rich), "sp": int(spy),
            "l": int(likes), "b": 0, "u": 0, "n": 0, "s": time.time(),
        }  # fmt: skip
        if nojs is not None:
            fields.update({"nj": 1, "cs": json.dumps(nojs), "tb": 0, "tv": 0, "st": 0})
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.record_key(key), mapping=fields)
        pipe.pexpire(self.record_key(key), self.ttl_ms)
        pipe.sadd(self.addresses_key(address), key)
        pipe.pexpire(self.addresses_key(address), self.ttl_ms)
        pipe.sadd(self.owned_key(self.instance), key)
        await pipe.execute()

    async def find(self, key: str) -> Record | None:
        """The record of client `key`, or None (never started, ended and fetched, or expired)."""
        raw = await self.redis.hgetall(self.record_key(key))
        if not raw or "o" not in raw:
            return None
        return Record(
            key, raw["o"], raw.get("e") == "1", raw.get("k") == "1", raw.get("r") == "1", raw.get("sp") == "1",
            raw.get("l") == "1", float(raw.get("s") or 0), raw.get("nj") == "1",
        )  # fmt: skip

    async def records(self, keys: list[str]) -> list[tuple[str, dict[str, str]]]:
        """The raw records of `keys` that still exist (a restarted owner takes its clients back)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self.record_key(key))
        found = await pipe.execute()
        return [(key, raw) for key, raw in zip(keys, found) if raw and raw.get("o") == self.instance and raw.get("e") != "1"]

    async def seen(self, keys: list[str], *, polled: bool = False) -> list[float]:
        """When each client was last seen by any instance (0: gone): a poll began or ended; `polled`:
        a poll began (a page that went away is back only if it polls again)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self.record_key(key), "g" if polled else "s")
        return [float(value or 0) for value in await pipe.execute()]

    async def give_back(self, key: str, events: list[list]) -> None:
        """Put events a poll took back at the head of the queue (its poller went away before the
        answer was written), in their order, for the next poll."""
        await self._give_back(keys=[self.record_key(key), self.queue_key(key)], args=[json.dumps(e, separators=(",", ":")) for e in events])

    async def sessions(self, address: str) -> int:
        """Live client ids of `address` on every instance; ids whose records expired are dropped."""
        members = await self.redis.smembers(self.addresses_key(address))
        if not members:
            return 0
        keys = sorted(members)
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self.record_key(key), "o", "e")
        dead = [key for key, (owner, ended) in zip(keys, await pipe.execute()) if owner is None or ended == "1"]
        if dead:
            await self.redis.srem(self.addresses_key(address), *dead)
        return len(keys) - len(dead)

    async def forget(self, key: str, address: str) -> None:
        """The client is gone for good (left, stopped polling): its record, queue and count."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.record_key(key), self.queue_key(key))
        pipe.srem(self.addresses_key(address), key)
        pipe.srem(self.owned_key(self.instance), key)
        await pipe.execute()

    async def orphans(self, instance: str) -> list[tuple[str, bool, bool]]:
        """Take (once, whichever instance asks first) the live clients of `instance`, gone for good:
        (key, spy, nojs) of each."""
        out: list[tuple[str, bool, bool]] = []
        while keys := await self.redis.spop(self.owned_key(instance), 256):
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self.record_key(key), "e", "sp", "nj")
            for key, (ended, spy, nojs) in zip(keys, await pipe.execute()):
                if ended is None and spy is not None:  # still live (not ended, not expired)
                    out.append((key, spy == "1", nojs == "1"))
        return out

    def tell(self, owner: str, key: str, path: str, form: dict[str, str]) -> None:
        """Hand an action to the owner without waiting for its answer (it takes effect there, in order)."""
        self.relay.send(owner, {"id": uuid.uuid4().hex, "t": "a", "k": key, "p": path, "f": form, "r": self.instance, "n": self.once.number()})

    # ---- open polls per address ----------------------------------------------------------------

    async def poll_begin(self, hashed: str, cap: int, lease: float) -> str:
        """Count an open poll (or no-JS stream) of the address hashed `hashed` on every instance, for
        `lease` seconds unless renewed: its member name, or "" when `cap` are open already. Raises DOWN."""
        member = f"{self.instance}:{uuid.uuid4().hex}"
        counted = await self._poll_slot(keys=[self.polls_key(hashed)], args=[max(cap, 1), member, int(lease * 1000)])
        return member if counted else ""

    async def poll_renew(self, hashed: str, member: str, lease: float) -> None:
        """A long-lived stream is still open: its count lasts `lease` seconds more. Raises DOWN."""
        await self._poll_slot(keys=[self.polls_key(hashed)], args=[0, member, int(lease * 1000)])

    async def poll_end(self, hashed: str, member: str) -> None:
        try:
            await self.redis.zrem(self.polls_key(hashed), member)
        except DOWN as exc:  # its lease ends it
            log.debug("web: ending a poll's count failed (%s)", type(exc).__name__)

    # ---- events ------------------------------------------------------------------------------

    async def push(
        self, key: str, address: str, items: list[list], *, force: bool, final: bool, news: bool, notice: list, expect: int = -1,
    ) -> tuple[int, int, int] | None:
        """Append `items` to the client's queue (bounded unless `force`, one `notice` when it overflows)
        and wake its open poll wherever it is. `expect` (after a push that failed): how many events
        were ever queued when the owner last knew, so whatever a failed push queued after all is
        taken out first (see PUSH). Returns the sequence number after the queue's last event, how
        many events were ever queued and how many of `items` were dropped, or None when the client
        has no record (it was made while Redis was away, or Redis lost it). Raises DOWN."""
        dumped = [json.dumps(item, separators=(",", ":")) for item in items]
        args = [self.max_queue, int(force), self.ttl_ms, int(final), int(news), json.dumps(notice), expect, *dumped]
        keys = [self.record_key(key), self.queue_key(key), self.addresses_key(address), self.owned_key(self.instance)]
        reply = await self._push(keys=keys, args=args)
        if not reply:
            return None
        if reply[0]:
            self.wake(reply[0], key)
        return int(reply[1]), int(reply[2]), int(reply[3])

    async def take(self, key: str, *, token: str = "", ack: int | None = None, begin: bool = False) -> Taken:
        """Atomically take the client's pending events (an acknowledging client's: every unacknowledged
        one, after trimming to `ack`). `begin`: a new poll `token` takes over the id."""
        args = [token, "" if ack is None else ack, time.time(), self.ttl_ms, self.retired_ms, int(begin), self.instance]
        reply = await self._take(keys=[self.record_key(key), self.queue_key(key)], args=args)
        status = reply[0]
        if status not in ("ok", "empty"):
            return Taken(status)
        events = [json.loads(item) for item in reply[6:]]
        return Taken(status, int(reply[1]), reply[2] == 1, reply[3] or "", reply[4] == 1, int(reply[5]), events)

    async def end_poll(self, key: str, token: str) -> None:
        try:
            await self._end_poll(keys=[self.record_key(key)], args=[token, time.time()])
        except (rx.RedisError, OSError, asyncio.TimeoutError) as exc:
            log.debug("web: ending a poll's record failed (%s)", type(exc).__name__)

    # ---- waking and forwarding -----------------------------------------------------------

    def wake(self, instance: str, key: str) -> None:
        """Wake the poll of client `key` open on `instance` (this one: at once; another: through the relay)."""
        if instance == self.instance:
            fut = self.waiters.get(key)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        self.relay.send(instance, {"id": uuid.uuid4().hex, "t": "w", "k": key})

    async def wait(self, key: str, timeout: float) -> bool:
        """Wait until the poll of `key` on this instance is woken (True), or `timeout` passes."""
        fut = asyncio.get_running_loop().create_future()
        older = self.waiters.get(key)
        self.waiters[key] = fut
        if older is not None and not older.done():
            older.set_result(None)  # an older poll of this id on this instance looks again (it was superseded)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            if self.waiters.get(key) is fut:
                del self.waiters[key]
        return True

    async def forward(
        self, owner: str, key: str, path: str, form: dict[str, str], *, expires: bool = False,
    ) -> tuple[int, str] | None:
        """Hand an action of client `key` (its endpoint and form, without the id) to its owner and
        wait up to FORWARD_WAIT for its answer (status, body). None: the owner did not answer in time
        (it is restarting): the action waits in its stream and takes effect when it is back; or,
        `expires` (its asker is told it failed), it takes no effect unless applied within
        FORWARD_WAIT - EXPIRY_MARGIN of Redis's clock."""
        fields = {k: v for k, v in form.items() if k != "id"}
        request = uuid.uuid4().hex
        envelope = {"id": request, "t": "a", "k": key, "p": path, "f": fields, "r": self.instance, "n": self.once.number()}
        if expires:
            envelope["u"] = await redis_ms(self.redis) + int((FORWARD_WAIT - EXPIRY_MARGIN) * 1000)
        self.relay.send(owner, envelope)
        if owner in self.silent:  # it did not answer lately: only make sure the action is in its stream
            await self.relay.drain(FORWARD_WAIT)
            return None
        answer = self.answers[request] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(FORWARD_WAIT):
                return await answer
        except TimeoutError:
            self.silent.add(owner)  # until it answers again, actions for it do not wait for it
            return None
        finally:
            del self.answers[request]

    def answer(self, envelope: dict[str, Any], status: int, body: str) -> None:
        """Send the answer of a forwarded action back to the instance that forwarded it."""
        self.relay.send(str(envelope.get("r")), {
            "id": uuid.uuid4().hex, "t": "r", "q": envelope.get("id"), "s": status, "b": body, "o": self.instance,
        })  # fmt: skip

    def _on_envelope(self, envelope: dict[str, Any]) -> None:
        kind, key = envelope.get("t"), str(envelope.get("k", ""))
        if kind == "w":
            self.wake(self.instance, key)
        elif kind == "a":
            self.once.take(envelope)
        elif kind == "r":
            self.silent.discard(str(envelope.get("o")))
            answer = self.answers.get(str(envelope.get("q")))
            if answer is not None and not answer.done():
                answer.set_result((int(envelope.get("s", 500)), str(envelope.get("b", ""))))

    async def claim_upload(self, key: str) -> bool | None:
        """One picture at a time per client, on every instance: False while another is being read;
        None when Redis is away."""
        try:
            return bool(await self.redis.set(f"{self.prefix}up:{key}", self.instance, nx=True, px=int(UPLOAD_CLAIM * 1000)))
        except DOWN as exc:
            log.info("web: an upload's claim failed (%s)", type(exc).__name__)
            return None

    async def release_upload(self, key: str) -> None:
        try:
            await self.redis.delete(f"{self.prefix}up:{key}")
        except DOWN as exc:  # its expiry releases it
            log.debug("web: releasing an upload's claim failed (%s)", type(exc).__name__)


