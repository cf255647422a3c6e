"""Start throttling: cooldown, starts per window, independence of keys, bounded memory; injected clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.policy.throttle import StartThrottle, throttle_notice


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_cooldown_between_two_starts():
    clock = Clock()
    throttle = StartThrottle(cooldown=5, max_starts=100, window=60, clock=clock)
    assert throttle.check("discord:a") == 0.0
    clock.now += 2
    assert throttle.check("discord:a") == pytest.approx(3.0)
    assert throttle.check("discord:b") == 0.0  # other users are not affected
    clock.now += 3
    assert throttle.check("discord:a") == 0.0


def test_max_starts_per_window():
    clock = Clock()
    throttle = StartThrottle(cooldown=0, max_starts=3, window=60, clock=clock)
    assert [throttle.check("web:x") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = throttle.check("web:x")
    assert wait == pytest.approx(20.0)  # one start back every 60/3 s
    clock.now += wait
    assert throttle.check("web:x") == 0.0
    assert throttle.check("web:x") > 0


def test_a_refused_start_is_not_counted():
    clock = Clock()
    throttle = StartThrottle(cooldown=10, max_starts=2, window=100, clock=clock)
    assert throttle.check("k") == 0.0
    for _ in range(50):
        assert throttle.check("k") > 0
    clock.now += 10
    assert throttle.check("k") == 0.0


def test_memory_is_bounded():
    clock = Clock()
    throttle = StartThrottle(cooldown=60, max_starts=5, window=60, max_keys=100, clock=clock)
    for i in range(1000):
        throttle.check(f"web:{i}")
    assert len(throttle) == 100
    assert throttle.check("web:999") > 0  # the most recent keys are the ones kept


def test_notice():
    assert throttle_notice(4.2) == "You are starting chats too quickly. Try again in 5 s."


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 30), max_size=60), st.integers(1, 5), st.floats(0, 10))
def test_never_more_than_allowed_in_any_window(steps, max_starts, cooldown):
    clock = Clock()
    window = 60.0
    throttle = StartThrottle(cooldown=cooldown, max_starts=max_starts, window=window, clock=clock)
    allowed: list[float] = []
    for step in steps:
        clock.now += step
        if throttle.check("u") == 0.0:
            if allowed:
                assert clock.now - allowed[-1] >= cooldown - 1e-9
            allowed.append(clock.now)
    # a token bucket of max_starts per window: at most max_starts + (span / window) * max_starts in any span
    for i, t in enumerate(allowed):
        inside = [u for u in allowed[i:] if u - t < window]
        assert len(inside) <= 2 * max_starts


def test_a_shared_key_gets_its_own_larger_allowance_and_no_cooldown():
    clock = [0.0]
    throttle = StartThrottle(cooldown=30, max_starts=2, window=60, shared_starts=5, clock=lambda: clock[0])
    assert [throttle.check("net", shared=True) for _ in range(5)] == [0.0] * 5  # no cooldown between them
    assert throttle.check("net", shared=True) > 0  # the sixth in the window waits
    assert throttle.check("person") == 0.0 and throttle.check("person") > 0  # one person: the cooldown holds
