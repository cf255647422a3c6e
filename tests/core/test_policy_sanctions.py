"""Bans, reports, strikes and the moderation log over the real store: escalation, expiry, weighting, persistence."""

import asyncio
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.identity import user_key
from bridge.policy.sanctions import NAMESPACE, Ban, Sanctions, ban_notice
from bridge.policy.subjects import SubjectError, subject_key
from bridge.store import MemoryStore, SQLiteStore

HOUR, DAY = 3600.0, 86400.0


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def make(store=None, clock=None, **kw):
    clock = clock or Clock()
    return Sanctions(store or MemoryStore(), clock=clock, **kw), clock


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("discord:80351110224678912", user_key("discord", "80351110224678912")),
        ("Discord:80351110224678912", user_key("discord", "80351110224678912")),
        ("matrix:@alice:example.org", user_key("matrix", "@alice:example.org")),
        ("discord:0123456789abcdef", "discord:0123456789abcdef"),  # a key as the log shows it
        ("web:0123456789abcdef", "web:0123456789abcdef"),
        ("omegle:9f8e7d6c5b4a3210", "omegle:9f8e7d6c5b4a3210"),
        ("matrix:*:example.org", "matrix:*:example.org"),  # a server glob stays a glob
        ("matrix:*:*.Example.org", "matrix:*:*.example.org"),
        ("matrix:*:example.org:8448", "matrix:*:example.org:8448"),
    ],
)
def test_subject_keys(subject, key):
    assert subject_key(subject) == key


@pytest.mark.parametrize(
    "subject", ["", "discord", "discord:", ":123", "dis cord:1", "1discord:2", "matrix:@spam*:example.org", "matrix:*:", "matrix:*:a b"]
)
def test_bad_subjects(subject):
    with pytest.raises(SubjectError, match="PLATFORM:USER|matrix:\\*:SERVER"):
        subject_key(subject)


async def test_ban_expires_and_notice_says_the_time_left():
    sanctions, clock = make()
    key = subject_key("discord:80351110224678912")
    ban = await sanctions.ban(key, 2 * HOUR, "spam links")
    assert await sanctions.check(key) == ban
    clock.advance(HOUR + 20 * 60)
    assert ban_notice(await sanctions.check(key), clock()) == (
        "You are banned from starting chats on this bridge for 40 min more. Reason: spam links."
    )
    clock.advance(40 * 60)
    assert await sanctions.check(key) is None  # expired exactly at its end
    assert await sanctions.listing() == []


async def test_permanent_ban_unban_and_notice():
    sanctions, clock = make()
    ban = await sanctions.ban("web:0123456789abcdef", None, "")
    clock.advance(365 * DAY)
    assert await sanctions.check("web:0123456789abcdef") == ban
    assert ban_notice(ban, clock()) == "You are banned from starting chats on this bridge."
    assert await sanctions.unban("web:0123456789abcdef") is True
    assert await sanctions.check("web:0123456789abcdef") is None
    assert await sanctions.unban("web:0123456789abcdef") is False


async def test_matrix_server_globs_match_servers_and_nothing_else():
    sanctions, clock = make()
    await sanctions.ban(subject_key("matrix:*:spam.example"), None, "spam server")
    await sanctions.ban(subject_key("matrix:*:*.bots.example"), HOUR, "bots")
    key = user_key("matrix", "@x:spam.example")
    assert (await sanctions.check(key, server="spam.example")).key == "matrix:*:spam.example"
    assert (await sanctions.check(key, server="SPAM.example")).key == "matrix:*:spam.example"
    assert (await sanctions.check("matrix:0000000000000000", server="a.bots.example")).reason == "bots"
    assert await sanctions.check("matrix:0000000000000000", server="bots.example") is None
    assert await sanctions.check("matrix:0000000000000000", server="notspam.example") is None
    assert await sanctions.check(key) is None  # without the server a glob cannot be applied
    assert {k for k, _, _ in await sanctions.listing()} == {"matrix:*:spam.example", "matrix:*:*.bots.example"}
    clock.advance(HOUR)
    assert await sanctions.check("matrix:0000000000000000", server="a.bots.example") is None
    assert await sanctions.unban("matrix:*:spam.example")
    assert await sanctions.check(key, server="spam.example") is None
    assert await sanctions.listing() == []


async def test_three_distinct_reporters_make_a_strike_and_bans_grow_then_expire():
    sanctions, clock = make(report_threshold=3, ban_steps=(HOUR, DAY, 7 * DAY), strike_ttl=30 * DAY)
    bad = "discord:badbadbadbadbad0"
    expected = [HOUR, DAY, 7 * DAY, 7 * DAY]  # the last step repeats
    for round_, duration in enumerate(expected):
        reporters = [f"discord:{round_:02d}reporter{i:05d}" for i in range(3)]
        first = await sanctions.report(reporters[0], bad)
        second = await sanctions.report(reporters[1], bad)
        assert not first.strike and not second.strike
        assert await sanctions.check(bad) is None
        third = await sanctions.report(reporters[2], bad)
        assert third.strike and third.ban is not None
        assert third.ban.until == pytest.approx(clock() + duration)
        assert (await sanctions.check(bad)).by == "strikes"
        clock.advance(duration)
        assert await sanctions.check(bad) is None  # each ban expires
        clock.advance(60)
    strikes = [s for k, _, s in await sanctions.listing() if k == bad]
    assert strikes == [4]
    clock.advance(31 * DAY)  # strikes are forgotten after strike_ttl: the next strike is the first again
    assert await sanctions.listing() == []
    for i in range(3):
        outcome = await sanctions.report(f"discord:lateReporter{i:04d}", bad)
    assert outcome.ban.until == pytest.approx(clock() + HOUR)


async def test_the_same_reporter_twice_counts_once():
    sanctions, _ = make(report_threshold=2)
    assert (await sanctions.report("discord:aaaaaaaaaaaaaaaa", "discord:bbbbbbbbbbbbbbbb")).recorded
    again = await sanctions.report("discord:aaaaaaaaaaaaaaaa", "discord:bbbbbbbbbbbbbbbb")
    assert not again.recorded and not again.strike
    assert await sanctions.check("discord:bbbbbbbbbbbbbbbb") is None
    assert not (await sanctions.report("discord:aaaaaaaaaaaaaaaa", "discord:aaaaaaaaaaaaaaaa")).recorded  # self


async def test_reports_outside_the_window_do_not_add_up():
    sanctions, clock = make(report_threshold=2, report_window=HOUR)
    await sanctions.report("web:1111111111111111", "web:9999999999999999")
    clock.advance(HOUR + 1)
    outcome = await sanctions.report("web:2222222222222222", "web:9999999999999999")
    assert not outcome.strike


async def test_a_reporter_reporting_50_strangers_in_a_row_bans_nobody():
    sanctions, clock = make(report_threshold=3)
    serial = "discord:5e5e5e5e5e5e5e5e"
    victims = [f"discord:{i:016x}" for i in range(50)]
    for victim in victims:
        outcome = await sanctions.report(serial, victim)
        assert outcome.recorded and not outcome.strike
        clock.advance(5)
    # Even with two honest reporters against each victim afterwards, the serial reporter's
    # report now weighs 1/50: 1 + 1 + 0.02 stays under 3.
    for i, victim in enumerate(victims[:10]):
        for honest in ("discord:honest0000000001", "discord:honest0000000002"):
            assert not (await sanctions.report(honest[:8] + f"{i:02d}" + honest[10:], victim)).strike
    assert [await sanctions.check(v) for v in victims] == [None] * 50
    assert [r for r in await sanctions.log_records() if r.action == "ban"] == []


async def test_reports_without_a_stranger_key_are_logged_and_weigh_the_reporter():
    sanctions, _ = make(report_threshold=2)
    reporter = "discord:cccccccccccccccc"
    for _ in range(4):
        assert (await sanctions.report(reporter, None, "rude")).recorded
    records = await sanctions.log_records()
    assert [(r.action, r.subject, r.reason, r.by) for r in records] == [("report", None, "rude", reporter)] * 4
    # Four reports already: this reporter's next report weighs 1/5.
    await sanctions.report(reporter, "discord:dddddddddddddddd")
    assert not (await sanctions.report("discord:eeeeeeeeeeeeeeee", "discord:dddddddddddddddd")).strike


async def test_concurrent_reports_lose_nothing():
    sanctions, _ = make(report_threshold=10)
    bad = "web:abcdefabcdefabcd"
    await asyncio.gather(*(sanctions.report(f"web:{i:016x}", bad) for i in range(9)))
    record = json.loads(await sanctions.store.get(NAMESPACE, f"s:{bad}"))
    assert len(record["reports"]) == 9
    assert (await sanctions.report("web:ffffffffffffffff", bad)).strike
    assert sanctions._locks == {}  # no lock kept once idle


async def test_moderation_log_is_a_bounded_ring_with_retention():
    sanctions, clock = make(log_size=10, log_retention=DAY)
    for i in range(25):
        await sanctions.ban(f"web:{i:016x}", HOUR, f"r{i}")
        clock.advance(1)
    records = await sanctions.log_records()
    assert [r.reason for r in records] == [f"r{i}" for i in range(24, 14, -1)]
    assert [r.reason for r in await sanctions.log_records(limit=3)] == ["r24", "r23", "r22"]
    keys = [k for (ns, k) in sanctions.store._kv if ns == NAMESPACE and k.startswith("log:")]
    assert len(keys) == 11  # ten slots and the counter, however many records were written
    clock.advance(DAY)
    assert await sanctions.log_records() == []


async def test_log_lines_hold_no_native_ids_and_no_message_text():
    sanctions, _ = make()
    key = subject_key("discord:80351110224678912")
    await sanctions.ban(key, HOUR, "x")
    await sanctions.report("discord:1234567890abcdef", key, "said bad things")
    dump = json.dumps([r.__repr__() for r in await sanctions.log_records()])
    assert "80351110224678912" not in dump
    assert key in dump


async def test_bans_and_strikes_survive_a_new_store_on_the_same_file(tmp_path):
    path = tmp_path / "state.sqlite3"
    clock = Clock()
    first = Sanctions(SQLiteStore(path), clock=clock, report_threshold=2)
    await first.ban("discord:0123456789abcdef", DAY, "spam")
    await first.report("web:1111111111111111", "web:2222222222222222")
    await first.report("web:3333333333333333", "web:2222222222222222")
    await first.store.close()
    second = Sanctions(SQLiteStore(path), clock=clock, report_threshold=2)
    assert (await second.check("discord:0123456789abcdef")).reason == "spam"
    assert (await second.check("web:2222222222222222")).by == "strikes"
    assert {k for k, _, _ in await second.listing()} == {"discord:0123456789abcdef", "web:2222222222222222"}
    assert [r.action for r in await second.log_records()] == ["ban", "strike", "report", "report", "ban"]
    await second.store.close()


def test_one_reporter_alone_can_never_be_configured_to_cause_a_strike():
    with pytest.raises(ValueError, match="at least 2"):
        Sanctions(MemoryStore(), report_threshold=1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 2000)), max_size=40))
@example([(0, 0, 0), (1, 0, 10), (2, 0, 10), (0, 0, 10), (1, 0, 0), (3, 0, 5), (2, 0, 1)])
@example([(0, 1, 0), (0, 0, 0), (1, 0, 10), (2, 0, 10), (3, 0, 10)])
def test_a_strike_needs_reports_from_distinct_people_whose_weights_reach_the_threshold(reports):
    # Four reporters, five subjects, a one-hour window, threshold 3: a strike needs at least
    # three people who reported the subject since its last strike, whose weights (1 / distinct
    # subjects each reported inside the window) add up to 3.
    async def scenario():
        sanctions, clock = make(report_threshold=3, report_window=HOUR)
        seen: list[tuple[float, int, int]] = []
        last_strike: dict[int, int] = {}
        for index, (reporter, subject, step) in enumerate(reports):
            clock.advance(step)
            now = clock()
            seen.append((now, reporter, subject))
            outcome = await sanctions.report(f"web:r{reporter:015d}", f"web:s{subject:015d}")
            if not outcome.strike:
                continue
            since = last_strike.get(subject, -1)
            recent = [(t, r, s) for i, (t, r, s) in enumerate(seen) if t > now - HOUR]
            by = {r for i, (t, r, s) in enumerate(seen) if s == subject and t > now - HOUR and i > since}
            assert len(by) >= 3  # each reporter weighs at most 1
            weights = [1 / len({s for t, rr, s in recent if rr == r}) for r in by]
            assert sum(weights) >= 3 - 1e-9
            last_strike[subject] = index

    asyncio.run(scenario())


def test_ban_dataclass_active():
    assert Ban("k", "", 0.0, None).active(1e12)
    assert not Ban("k", "", 0.0, 10.0).active(10.0)
