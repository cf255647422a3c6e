"""The one copy of each shared mechanism: backoff, token bucket, seen-id set, user_key; table tests."""

import asyncio
import hashlib
import random

import pytest

from bridge.backoff import Backoff
from bridge.bucket import TokenBucket
from bridge.dedupe import SeenIds
from bridge.identity import user_key

# ---- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "failures", "retry_after", "expected"),
    [
        (Backoff(0.2, cap=4.0), 1, None, 0.2),
        (Backoff(0.2, cap=4.0), 2, None, 0.4),
        (Backoff(0.2, cap=4.0), 3, None, 0.8),
        (Backoff(0.2, cap=4.0), 5, None, 3.2),
        (Backoff(0.2, cap=4.0), 6, None, 4.0),  # capped
        (Backoff(0.2, cap=4.0), 10_000, None, 4.0),  # a huge count neither overflows nor exceeds the cap
        (Backoff(0.2, cap=4.0), 0, None, 0.2),  # "no failures yet" is treated as the first
        (Backoff(0.5, cap=10.0, factor=3.0), 3, None, 4.5),
        (Backoff(0.2, cap=4.0), 1, 7.5, 7.5),  # the server's Retry-After wins, even above the cap
        (Backoff(0.2, cap=4.0), 3, 0.0, 0.8),  # a zero Retry-After is no instruction
        (Backoff(0.2, cap=4.0), 3, -1.0, 0.8),  # nor a negative one
        (Backoff(0.2, cap=4.0, max_retry_after=30.0), 1, 1e9, 30.0),  # a hostile Retry-After is bounded
    ],
)
def test_backoff_delays(policy, failures, retry_after, expected):
    assert policy.delay(failures, retry_after) == pytest.approx(expected)


def test_backoff_jitter_stays_within_its_fraction_and_varies():
    policy = Backoff(1.0, cap=8.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(4, rng=rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # spread out, not one value


@pytest.mark.parametrize(("attempts", "gives_up_at"), [(1, 1), (3, 3), (5, 5)])
def test_backoff_bounded_attempts(attempts, gives_up_at):
    policy = Backoff(0.0, attempts=attempts)
    assert [policy.gives_up(n) for n in range(1, gives_up_at + 1)] == [False] * (gives_up_at - 1) + [True]


def test_backoff_unbounded_never_gives_up():
    assert not Backoff(attempts=None).gives_up(10**9)


@pytest.mark.parametrize(
    "kwargs",
    [dict(base=-1), dict(cap=-1), dict(factor=0.5), dict(jitter=1.5), dict(attempts=0), dict(max_retry_after=-1)],
)
def test_backoff_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_retrying_counts_resets_and_gives_up():
    retry = Backoff(0.1, cap=1.0, attempts=3).retrying()
    assert retry.failed() == pytest.approx(0.1)
    assert retry.failed() == pytest.approx(0.2)
    retry.succeeded()
    assert retry.failed() == pytest.approx(0.1)  # back to the base after a success
    assert retry.failed(retry_after=2.0) == pytest.approx(2.0)
    assert retry.failed() is None  # third consecutive failure: give up
    assert retry.failures == 3


async def test_retrying_wait_sleeps_then_refuses():
    retry = Backoff(0.0, attempts=2).retrying()
    assert await retry.wait() is True
    assert await asyncio.wait_for(retry.wait(), 1) is False


# ---- token bucket ----------------------------------------------------------------------------


def test_bucket_allow_burst_then_rate():
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.4) is False  # 0.8 of a token
    assert bucket.allow(0.5) is True  # one token after 0.5 s at 2/s
    assert bucket.allow(0.5) is False
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]  # refill stops at burst


@pytest.mark.parametrize(
    ("spent", "at", "wait"),
    [
        (0, 0.0, 0.0),  # full: no wait
        (2, 0.0, 0.0),  # one token left
        (3, 0.0, 0.25),  # empty: one token at 4/s
        (5, 0.0, 0.75),  # two pongs spent below zero: -2 tokens, three needed
        (5, 0.5, 0.25),
        (3, 10.0, 0.0),
    ],
)
def test_bucket_pacing_wait_time(spent, at, wait):
    bucket = TokenBucket(4.0, 3, now=0.0)
    for _ in range(spent):
        bucket.spend(now=0.0)
    assert bucket.wait_time(at) == pytest.approx(wait)


def test_bucket_clock_going_back_takes_nothing():
    bucket = TokenBucket(1.0, 2, now=10.0)
    bucket.spend(2, now=10.0)
    assert bucket.wait_time(5.0) == pytest.approx(1.0)
    assert bucket.allow(11.0) is True


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bucket_refuses_nonsense(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


# ---- seen ids --------------------------------------------------------------------------------


def test_seen_ids_first_time_and_eviction_of_the_oldest():
    seen: SeenIds[int, None] = SeenIds(3)
    assert [seen.first_time(i) for i in (1, 2, 1, 3, 4)] == [True, True, False, True, True]
    assert list(seen) == [2, 3, 4] and len(seen) == 3  # 1 was the oldest
    assert 1 not in seen and seen.first_time(1) is True
    assert list(seen) == [3, 4, 1]


def test_seen_ids_values_update_without_ageing():
    seen: SeenIds[int, str] = SeenIds(2)
    seen.remember(10, "hello")
    seen.remember(11, "there")
    seen.remember(10, "hello (edited)")  # known id: value updated, still the oldest
    assert seen.get(10) == "hello (edited)"
    seen.remember(12, "x")
    assert 10 not in seen and seen.get(10) is None and seen.get(11) == "there"
    assert seen.get(99, "default") == "default"


def test_seen_ids_newest_and_reload():
    seen: SeenIds[str, None] = SeenIds(5, ["a", "b", "c"])
    assert seen.newest(2) == ["b", "c"] and seen.newest(10) == ["a", "b", "c"] and seen.newest(0) == []
    again: SeenIds[str, None] = SeenIds(2, seen.newest(5))
    assert list(again) == ["b", "c"]  # a persisted list longer than the limit keeps its newest


def test_seen_ids_refuses_zero_limit():
    with pytest.raises(ValueError):
        SeenIds(0)


# ---- user_key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "native", "expected"),
    [
        ("discord", 123456789012345678, "discord:" + hashlib.sha256(b"123456789012345678").hexdigest()[:16]),
        ("matrix", "@alice:example.org", "matrix:" + hashlib.sha256(b"@alice:example.org").hexdigest()[:16]),
    ],
)
def test_user_key_form_is_stable(platform, native, expected):
    # The hub stores blocks under these keys: the form is what both platforms used before.
    assert user_key(platform, native) == expected


def test_user_key_never_contains_the_native_id():
    key = user_key("matrix", "@alice:example.org")
    assert "alice" not in key and key != user_key("matrix", "@alice:example.com")
    assert user_key("discord", 42) == user_key("discord", "42")


def test_token_bucket_says_when_it_is_full_again():
    bucket = TokenBucket(0.5, 4, now=0.0)
    assert bucket.full_in(0.0) == 0.0
    assert bucket.allow(0.0) and bucket.allow(0.0)
    assert bucket.full_in(0.0) == pytest.approx(4.0)  # two tokens at 0.5 a second
    assert bucket.full_in(3.0) == pytest.approx(1.0)
    assert bucket.full_in(4.0) == 0.0
    assert bucket.full_in(100.0) == 0.0
