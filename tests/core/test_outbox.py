"""The shared outbox (bridge/outbox.py): order, merging when slowed, retries, giving up, typing pace, idleness."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from bridge.backoff import Backoff
from bridge.metrics import Metrics
from bridge.delivery import MERGE_MARKER, Item, OutboxPolicy, Permanent, RateLimited, merge_marker
from bridge.outbox import Outbox, Outboxes

FAST = OutboxPolicy(platform="test", retry=Backoff(0.0, attempts=4), slow_after=float("inf"), typing_every=0.0)
ONCE = Backoff(0.0, attempts=1)  # no retry at all


class FakeSender:
    """Records what the outbox sends; the first send can be held on a gate; sends can be scripted to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []  # ("text", label, text, count, marker, key) | ("payload", payload, key)
        self.attempts: list[tuple[str, int, bool]] = []  # (text or payload, attempt number, maybe_stored)
        self.typing: list[tuple[bool, float]] = []
        self.failures: dict[str, list[BaseException]] = {}  # text or payload -> exceptions raised in turn
        self.gate: asyncio.Event | None = None  # the first send waits for it (the room is slow)
        self.entered = asyncio.Event()
        self.changed = asyncio.Event()

    async def _before(self, what: str, item: Item) -> None:
        self.attempts.append((what, item.attempts, item.maybe_stored))
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.entered.set()
            await gate.wait()
        queued = self.failures.get(what)
        if queued:
            raise queued.pop(0)

    async def send_text(self, room, item: Item) -> None:
        await self._before(item.text, item)
        self.sent.append(("text", item.label, item.text, item.count, item.marker, item.key))
        self.changed.set()

    async def send_payload(self, room, item: Item) -> None:
        await self._before(str(item.payload), item)
        self.sent.append(("payload", item.payload, item.key))
        self.changed.set()

    async def send_typing(self, room, on: bool) -> None:
        self.typing.append((on, time.monotonic()))
        self.changed.set()

    async def wait(self, test, timeout: float = 5.0):
        async with asyncio.timeout(timeout):
            while not (result := test()):
                self.changed.clear()
                await self.changed.wait()
        return result


def texts(sender: FakeSender) -> list[tuple]:
    return [(s[1], s[2], s[3]) for s in sender.sent if s[0] == "text"]


async def held(box: Outbox, sender: FakeSender, first: tuple[str | None, str]) -> asyncio.Event:
    """Send `first` and hold it on the wire (as a rate-limited send is) until the returned gate opens."""
    gate = sender.gate = asyncio.Event()
    box.put_text(*first)
    await sender.entered.wait()
    return gate


async def test_items_leave_one_at_a_time_in_order_when_not_slowed():
    sender = FakeSender()
    box = Outbox("r", sender, FAST)
    gate = await held(box, sender, ("A", "t0"))
    for i in range(1, 10):
        box.put_text("A", f"t{i}")
    gate.set()
    await box.drain()
    assert texts(sender) == [("A", f"t{i}", 1) for i in range(10)]
    assert box.merged == 0


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        # one speaker: everything that waited behind the slow send becomes one message
        ([("A", "b"), ("A", "c"), ("A", "d")], [("A", "a", 1), ("A", "b\nc\nd", 3)]),
        # only consecutive texts of one speaker merge (each speaker has a name on the platform)
        ([("A", "b"), ("B", "c"), ("B", "d"), ("A", "e")], [("A", "a", 1), ("A", "b", 1), ("B", "c\nd", 2), ("A", "e", 1)]),
        # a notice between texts stays where it is and splits the run
        ([("A", "b"), "notice", ("A", "c"), ("A", "d")], [("A", "a", 1), ("A", "b", 1), ("A", "c\nd", 2)]),
        # the only stranger (no label)
        ([(None, "b"), (None, "c")], [(None, "a", 1), (None, "b\nc", 2)]),
    ],
)
async def test_texts_waiting_behind_a_slow_send_merge_with_one_marker(queued, expected):
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=0.0))
    gate = await held(box, sender, (expected[0][0], "a"))
    for entry in queued:
        if entry == "notice":
            box.put_payload("notice")
        else:
            box.put_text(*entry)
    gate.set()
    await box.drain()
    assert texts(sender) == expected
    for kind, label, _, count, marker, _key in (s for s in sender.sent if s[0] == "text"):
        assert marker == (MERGE_MARKER.format(n=count, who=label or "Stranger") if count > 1 else None)
    if "notice" in queued:
        kinds = [s[0] if s[0] == "payload" else s[2] for s in sender.sent]
        assert kinds == ["a", "b", "payload", "c\nd"]
    assert box.merged == sum(c - 1 for _, _, c in expected)


async def test_only_texts_of_one_group_merge():
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=0.0))
    gate = await held(box, sender, ("A", "first"))
    for text, group in (("t1", "x"), ("t2", "x"), ("u1", "y"), ("u2", "y"), ("t3", "x")):
        box.put_text("A", text, group=group)
    gate.set()
    await box.drain()
    assert texts(sender) == [("A", "first", 1), ("A", "t1\nt2", 2), ("A", "u1\nu2", 2), ("A", "t3", 1)]


async def test_merging_stops_at_the_merge_limit_so_nothing_is_cut():
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=0.0, merge_limit=10))
    gate = await held(box, sender, ("A", "first"))
    for word in ("aaaa", "bbbb", "cccc", "dddd", "e"):
        box.put_text("A", word)
    gate.set()
    await box.drain()
    assert texts(sender) == [("A", "first", 1), ("A", "aaaa\nbbbb", 2), ("A", "cccc\ndddd", 2), ("A", "e", 1)]
    assert all(len(text) <= 10 for _, text, _ in texts(sender))


@pytest.mark.parametrize(("waiting", "merged"), [(3, False), (4, True)])
async def test_a_backlog_merges_even_when_sends_are_fast(waiting, merged):
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=float("inf"), merge_backlog=4))
    gate = await held(box, sender, ("A", "x"))
    for i in range(waiting):
        box.put_text("A", f"m{i}")
    gate.set()
    await box.drain()
    got = texts(sender)[1:]
    if merged:
        assert got == [("A", "\n".join(f"m{i}" for i in range(waiting)), waiting)]
    else:
        assert got == [("A", f"m{i}", 1) for i in range(waiting)]


async def test_a_text_keeps_the_key_it_was_queued_with_and_a_merge_keeps_the_first():
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=float("inf"), merge_backlog=2))
    gate = sender.gate = asyncio.Event()
    box.put_text("A", "x", key="k0")
    await sender.entered.wait()
    box.put_text("A", "m1", key="k1")
    box.put_text("A", "m2", key="k2")
    box.put_text("B", "n")  # no key given: one of the outbox's own, never the same twice
    gate.set()
    await box.drain()
    keys = [s[5] for s in sender.sent]
    assert [(s[2], s[5]) for s in sender.sent[:2]] == [("x", "k0"), ("m1\nm2", "k1")]
    assert keys[2] not in ("k0", "k1", "k2") and len(keys) == 3


async def test_drain_waits_for_what_is_queued_and_idle_says_so():
    sender = FakeSender()
    box = Outbox("r", sender, FAST)
    assert box.idle.is_set() and box.is_idle
    gate = await held(box, sender, (None, "a"))
    assert not box.idle.is_set() and not box.is_idle
    draining = asyncio.ensure_future(box.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    gate.set()
    await asyncio.wait_for(draining, 5)
    assert texts(sender) == [(None, "a", 1)] and box.idle.is_set() and box.is_idle


def test_the_marker_is_one_declaration():
    assert merge_marker(3, "Stranger 2") == "3 messages from Stranger 2 were merged into one while delivery was slowed down."
    assert merge_marker(2, None) == MERGE_MARKER.format(n=2, who="Stranger")
    assert Item("text", label="A", text="x").marker is None
    assert Item("text", label="A", text="x\ny", count=2).marker == merge_marker(2, "A")


@pytest.mark.parametrize(
    ("errors", "tries", "outcome", "attempts"),
    [
        ([], 3, "sent", 1),
        ([ConnectionError()], 3, "sent", 2),
        ([ConnectionError(), TimeoutError()], 3, "sent", 3),
        ([ConnectionError(), ConnectionError(), ConnectionError()], 3, "transient", 3),
        ([Permanent("thread locked")], 3, "permanent", 1),
        ([ConnectionError(), Permanent("gone")], 3, "permanent", 2),
        ([RateLimited(0.0)] * 5, 1, "sent", 6),  # waiting on a rate limit is not a failure
        ([RateLimited(0.0)] * 3, 6, "rate_limited", 3),  # ... but is bounded (max_rate_waits=2)
    ],
)
async def test_bounded_retries_with_the_same_key_then_given_up(errors, tries, outcome, attempts):
    sender = FakeSender()
    sender.failures["m"] = list(errors)
    metrics = Metrics()
    given_up: list[tuple[str, str, str]] = []
    policy = OutboxPolicy(platform="test", retry=Backoff(0.0, attempts=tries), slow_after=float("inf"),
                          max_rate_waits=2 if outcome == "rate_limited" else 20)
    box = Outbox("r", sender, policy, metrics=metrics, on_given_up=lambda b, item, why: given_up.append((b.room, item.text, why)))
    box.put_text("A", "m")
    box.put_text("A", "after")
    await box.drain()
    tries = [a for a in sender.attempts if a[0] == "m"]
    assert [n for _, n, _ in tries] == list(range(1, attempts + 1))
    # an attempt after a transient failure knows the earlier one may have been stored
    transient = [isinstance(e, Exception) and not isinstance(e, Permanent | RateLimited) for e in errors]
    for index, (_, _, maybe) in enumerate(tries):
        assert maybe == any(transient[:index])
    keys = {s[-1] for s in sender.sent if s[0] == "text" and s[2] == "m"}
    if outcome == "sent":
        assert texts(sender) == [("A", "m", 1), ("A", "after", 1)] and len(keys) == 1
        assert given_up == [] and box.failed == 0
    else:
        assert texts(sender) == [("A", "after", 1)]  # the next item still goes out
        assert given_up == [("r", "m", outcome)] and box.failed == 1
        assert metrics.counters[("deliver_failures", (("platform", "test"), ("reason", outcome)))] == 1
    assert metrics.counters[("deliver_attempts", (("platform", "test"),))] == attempts + 1


async def test_retries_wait_the_backoff_delays():
    sender = FakeSender()
    sender.failures["m"] = [ConnectionError(), ConnectionError()]
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=Backoff(0.05, attempts=3), slow_after=float("inf")))
    began = time.monotonic()
    box.put_text(None, "m")
    await box.drain()
    assert texts(sender) == [(None, "m", 1)]
    assert time.monotonic() - began >= 0.15  # a lower bound: never shorter than the declared waits


async def test_a_silent_item_is_given_up_without_the_hook():
    sender = FakeSender()
    sender.failures["not delivered"] = [Permanent("locked")]
    given_up: list = []
    box = Outbox("r", sender, FAST, on_given_up=lambda *a: given_up.append(a))
    box.put_payload("not delivered", notify=False)
    box.put_payload("next")
    await box.drain()
    assert [s[1] for s in sender.sent] == ["next"] and given_up == [] and box.failed == 1


async def test_a_rate_limit_marks_the_room_slowed_so_what_waits_merges():
    sender = FakeSender()
    sender.failures["a"] = [RateLimited(0.0)]
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, slow_after=float("inf")))
    gate = await held(box, sender, ("A", "a"))
    box.put_text("A", "b")
    box.put_text("A", "c")
    gate.set()
    await box.drain()
    assert texts(sender) == [("A", "a", 1), ("A", "b\nc", 2)]


async def test_a_call_runs_after_what_was_queued_before_it():
    sender = FakeSender()
    box = Outbox("r", sender, FAST)
    order: list[str] = []

    async def archive() -> None:
        order.append(f"archive after {len(sender.sent)}")

    box.put_text(None, "bye")
    box.put_payload("ended")
    box.put_call(archive)
    await box.drain()
    assert order == ["archive after 2"]


async def test_typing_is_paced_refreshed_and_never_a_queue_item():
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, typing_every=0.05))
    box.typing_start("A")
    await sender.wait(lambda: len(sender.typing) >= 4)  # refreshed while it lasts
    box.typing_stop("A")
    stamps = [at for _, at in sender.typing]
    assert all(b - a >= 0.05 for a, b in zip(stamps, stamps[1:]))  # never more often than the pace
    assert all(on for on, _ in sender.typing) and not box.queue


async def test_typing_off_call_follows_the_last_typist_and_repeated_starts_add_nothing():
    sender = FakeSender()
    box = Outbox("r", sender, OutboxPolicy(platform="test", retry=ONCE, typing_every=1000.0, typing_off=True))
    box.typing_start("A")
    await sender.wait(lambda: sender.typing)
    box.typing_start("A")
    box.typing_start("B")
    box.typing_stop("A")
    box.typing_stop("B")  # the "off" call is the marker: every start before it was already seen
    await sender.wait(lambda: any(not on for on, _ in sender.typing))
    assert [on for on, _ in sender.typing] == [True, False]


async def test_an_idle_outbox_is_dropped_but_not_before_its_typing_pace_allows():
    sender = FakeSender()
    dropped: list[str] = []
    boxes = Outboxes(sender, OutboxPolicy(platform="test", retry=ONCE, typing_every=0.2), on_drop=dropped.append)
    boxes.get("r").put_text(None, "hi")
    await sender.wait(lambda: sender.sent)
    await _until(lambda: "r" not in boxes)
    assert dropped == ["r"]  # the owner is told, so it can forget the room too
    box = boxes.get("r")
    box.typing_start(None)
    await sender.wait(lambda: sender.typing)
    box.typing_stop(None)
    assert "r" in boxes  # a new outbox now would call typing again before 0.2 s
    await _until(lambda: "r" not in boxes)
    assert time.monotonic() - sender.typing[0][1] >= 0.2
    for n in range(200):  # churn: rooms come and go, the registry follows live work only
        boxes.get(f"room{n}").put_text(None, "x")
    await boxes.drain()
    await _until(lambda: len(boxes) == 0)
    assert len(sender.sent) == 201


async def test_close_drops_what_waits_and_drain_returns():
    sender = FakeSender()
    box = Outbox("r", sender, FAST)
    gate = await held(box, sender, (None, "a"))
    box.put_text(None, "b")
    box.close()
    await box.drain()
    box.put_text(None, "c")  # a closed outbox takes nothing more
    gate.set()
    with contextlib.suppress(asyncio.CancelledError):
        await box.task  # the send in flight was cancelled: nothing after it can leave
    assert box.task.cancelled() and not box.queue and box.idle.is_set()
    assert texts(sender) == []


async def _until(test, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not test():
            await asyncio.sleep(0.01)


async def test_a_room_keeps_one_outbox_while_its_caller_queues():
    # deliver() does get(room), typing_stop(), put_text(): the outbox must not be dropped in between,
    # or two outboxes of one room would send out of order.
    sender = FakeSender()
    boxes = Outboxes(sender, OutboxPolicy(platform="test", retry=ONCE, typing_every=0.0))
    first = boxes.get("r")
    gate = await held(first, sender, (None, "m0"))
    for i in range(1, 6):
        box = boxes.get("r")
        box.typing_stop(None)
        box.put_text(None, f"m{i}")
        assert box is first
    gate.set()
    await boxes.drain()
    assert [t for _, t, _ in texts(sender)] == [f"m{i}" for i in range(6)]
    boxes.get("empty")  # made but given nothing: dropped again
    await _until(lambda: len(boxes) == 0)


async def test_the_given_up_hook_can_put_a_notice_where_the_lost_item_was():
    sender = FakeSender()
    sender.failures["lost"] = [Permanent("no")]
    box = Outbox("r", sender, FAST, on_given_up=lambda b, item, why: b.put_payload(f"not delivered: {item.text}", notify=False, first=True))
    gate = await held(box, sender, (None, "lost"))
    box.put_text(None, "next")
    gate.set()
    await box.drain()
    assert [s[1] if s[0] == "payload" else s[2] for s in sender.sent] == ["not delivered: lost", "next"]
