"""Shared moderation state changes atomically: compare-and-set on every store, and two instances on one
real Redis (or a daemon's SQLite file and `stranger-bridge mod` beside it) hammering one user's
reports, strikes and bans lose nothing."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import pytest

from bridge.policy.sanctions import NAMESPACE, Sanctions
from bridge.store import MemoryStore, SQLiteStore
from tests.store.test_redis_store import open_redis

SUBJECT = "web:ffff0000000000aa"  # nobody reports themselves


def reporter(n: int) -> str:
    return f"web:{n + 1:016x}"


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def any_store(request, tmp_path):
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "s.db")
    else:
        store = await open_redis(request.getfixturevalue("redis_server").url)
    yield store
    await store.close()


async def test_compare_and_set_contract_on_every_store(any_store):
    store = any_store
    assert await store.compare_and_set("ns", "k", None, None)  # unset, and expected unset
    assert not await store.compare_and_set("ns", "k", "x", "y")  # it is not "x"
    assert await store.get("ns", "k") is None
    assert await store.compare_and_set("ns", "k", None, "1")
    assert not await store.compare_and_set("ns", "k", None, "2")  # no longer unset
    assert not await store.compare_and_set("ns", "k", None, None)
    assert not await store.compare_and_set("ns", "k", "0", "2")
    assert await store.get("ns", "k") == "1"
    assert await store.compare_and_set("ns", "k", "1", "")  # an empty value is a value, not a delete
    assert await store.get("ns", "k") == ""
    assert not await store.compare_and_set("ns", "k", None, "3")
    assert await store.compare_and_set("ns", "k", "", "3")
    assert not await store.compare_and_set("other", "k", "3", "4")  # namespaces are apart
    assert await store.compare_and_set("ns", "k", "3", None)  # delete
    assert await store.get("ns", "k") is None


async def test_update_loses_nothing_under_concurrent_callers(any_store):
    store = any_store

    async def bump(raw: str | None) -> tuple[str, int]:
        data = json.loads(raw) if raw else {"n": 0, "who": []}
        await asyncio.sleep(0)  # another task's update runs here, between this read and the write
        data["n"] += 1
        return json.dumps(data), data["n"]

    got = await asyncio.gather(*(store.update("ns", "blob", bump) for _ in range(150)))
    assert sorted(got) == list(range(1, 151))  # each caller's change took effect once, on the latest value
    assert json.loads(await store.get("ns", "blob"))["n"] == 150


async def _two_instances(redis_server):
    return await open_redis(redis_server.url, "a"), await open_redis(redis_server.url, "b")


async def test_two_instances_reporting_one_user_at_once_count_every_report(redis_server):
    # 300 distinct reporters report one user, split over two instances at once: 3 reports make a
    # strike, so exactly 100 strikes; none of the 300 reports may be lost to the other instance's write.
    one, two = await _two_instances(redis_server)
    try:
        first = Sanctions(one, report_threshold=3, ban_steps=(3600.0,), log_size=2000)
        second = Sanctions(two, report_threshold=3, ban_steps=(3600.0,), log_size=2000)
        outcomes = await asyncio.gather(*((first, second)[n % 2].report(reporter(n), SUBJECT) for n in range(300)))
        assert all(o.recorded for o in outcomes)
        assert sum(o.strike for o in outcomes) == 100
        record = json.loads(await one.get(NAMESPACE, f"s:{SUBJECT}"))
        assert record["strikes"] == 100 and record["reports"] == {}
        assert record["ban"]["by"] == "strikes" and await second.check(SUBJECT) is not None
        actions = [r.action for r in await first.log_records()]
        assert actions.count("report") == 300 and actions.count("strike") == 100 and actions.count("ban") == 100
        assert [k for k, _, strikes in await second.listing()] == [SUBJECT]
    finally:
        await one.close()
        await two.close()


async def test_two_instances_keep_every_subject_one_reporter_reported(redis_server):
    # One web user (one key) served by two instances behind a load balancer reports 150 strangers:
    # the reporter's record holds all 150, so their weight is 1/150, not whatever survived the race.
    one, two = await _two_instances(redis_server)
    try:
        first, second = Sanctions(one), Sanctions(two)
        subjects = [f"web:{0xb000 + n:016x}" for n in range(150)]
        await asyncio.gather(*((first, second)[n % 2].report(reporter(0), s) for n, s in enumerate(subjects)))
        assert sorted(json.loads(await two.get(NAMESPACE, f"r:{reporter(0)}"))) == sorted(subjects)
    finally:
        await one.close()
        await two.close()


async def test_two_instances_banning_and_unbanning_at_once_keep_every_ban_and_glob(redis_server):
    one, two = await _two_instances(redis_server)
    try:
        first, second = Sanctions(one, log_size=2000), Sanctions(two, log_size=2000)
        keys = [f"web:{0xc000 + n:016x}" for n in range(120)]
        globs = [f"matrix:*:s{n}.example.org" for n in range(120)]
        both = (first, second)
        await asyncio.gather(
            *(both[n % 2].ban(k, None, "k") for n, k in enumerate(keys)),
            *(both[(n + 1) % 2].ban(g, None, "g") for n, g in enumerate(globs)),
        )
        listed = {k for k, ban, _ in await first.listing() if ban is not None}
        assert listed == set(keys) | set(globs)
        for n in range(120):  # every glob bans its server, from either instance
            assert (await both[n % 2].check("matrix:0000000000000001", server=f"s{n}.example.org")) is not None
        lifted = await asyncio.gather(*(both[n % 2].unban(k) for n, k in enumerate(keys[:60] + globs[:60])))
        assert all(lifted)
        assert {k for k, _, _ in await second.listing()} == set(keys[60:]) | set(globs[60:])
    finally:
        await one.close()
        await two.close()


async def test_a_listing_that_drops_an_expired_key_never_loses_a_ban_made_meanwhile(redis_server):
    # `listing` takes keys with nothing left out of the index while the other instance bans them again.
    one, two = await _two_instances(redis_server)
    try:
        first, second = Sanctions(one), Sanctions(two)
        keys = [f"web:{0xd000 + n:016x}" for n in range(40)]
        for k in keys:
            await first.ban(k, None)
            await first.unban(k)  # left in the index with nothing in force: the next listing drops it
        await asyncio.gather(first.listing(), *(second.ban(k, None) for k in keys))
        assert {k for k, _, _ in await first.listing()} == set(keys)
    finally:
        await one.close()
        await two.close()


_BESIDE = textwrap.dedent(
    """
    import asyncio, sys
    from bridge.policy.sanctions import Sanctions
    from bridge.store import SharedStateFile

    async def main():
        store = SharedStateFile(sys.argv[1])
        sanctions = Sanctions(store, report_threshold=3, log_size=2000)
        print("ready", flush=True)
        sys.stdin.readline()
        for n in range(int(sys.argv[2]), int(sys.argv[3])):
            await sanctions.report(f"web:{n + 1:016x}", sys.argv[4])
        await store.close()

    asyncio.run(main())
    """
)


async def test_a_daemon_and_a_tool_beside_it_on_one_sqlite_file_count_every_report(tmp_path):
    # The daemon's store and `stranger-bridge mod`'s (SharedStateFile, another process) on one file.
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    tool = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BESIDE, str(path), "300", "600", SUBJECT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert (await asyncio.wait_for(tool.stdout.readline(), 30)).strip() == b"ready"
        sanctions = Sanctions(store, report_threshold=3, log_size=2000)
        tool.stdin.write(b"go\n")
        await tool.stdin.drain()
        await asyncio.gather(*(sanctions.report(reporter(n), SUBJECT) for n in range(300)))
        assert await asyncio.wait_for(tool.wait(), 60) == 0
        record = json.loads(await store.get(NAMESPACE, f"s:{SUBJECT}"))
        assert record["strikes"] == 200 and record["reports"] == {}
        assert [r.action for r in await sanctions.log_records()].count("report") == 600
    finally:
        if tool.returncode is None:
            tool.kill()
            await tool.wait()
        await store.close()


async def test_two_instances_changing_one_discord_guild_at_once_keep_every_change(redis_server):
    # Two shards of one bot (two instances on one Redis) count, set and add words for one guild at once.
    from bridge.policy.config import PolicySection
    from bridge.policy.moderator import Moderator
    from plugins.discord.guilds import Guilds

    one, two = await _two_instances(redis_server)
    try:
        mods = [Moderator(PolicySection(), MemoryStore()) for _ in range(2)]
        both = [Guilds("discord", one.state_for("platform:discord")), Guilds("discord", two.state_for("platform:discord"))]
        changes = [{"only_guild": True}, {"images": True}, {"min_account_age": 60.0}, {"platforms": ("web",)}]
        await asyncio.gather(
            *(both[n % 2].count(7, "sessions") for n in range(200)),
            *(both[n % 2].count(7, "reports") for n in range(30)),
            *(both[n % 2].change_settings(7, c) for n, c in enumerate(changes)),
            *(both[n % 2].change_policy(mods[n % 2], 7, lambda p, n=n: p.with_word(f"w{n}", "hold")) for n in range(60)),
        )
        assert await both[0].counts(7) == {"sessions": 200, "reports": 30}
        settings = await both[1].settings(7)
        assert (settings.only_guild, settings.images, settings.min_account_age, settings.platforms) == (True, True, 60.0, ("web",))
        words = (await both[0].policy(7)).words["hold"]
        assert sorted(words) == sorted(f"w{n}" for n in range(60)) and len(words) == 60
    finally:
        await one.close()
        await two.close()


async def test_two_instances_count_one_persons_starts_together(redis_server):
    # Behind a load balancer one person's starts land on either instance: the limit of 5 per window
    # is theirs in all, not 5 on each. 40 starts at once over both: exactly 5 pass.
    from bridge.policy.config import PolicySection
    from bridge.policy.moderator import Moderator

    policy = PolicySection.model_validate({"max_starts": 5, "start_window": 600, "start_cooldown": 0})
    one, two = await _two_instances(redis_server)
    try:
        first, second = Moderator(policy, one), Moderator(policy, two)
        refusals = await asyncio.gather(*((first, second)[n % 2].start_refusal("web:00000000000000ab") for n in range(40)))
        assert refusals.count(None) == 5
        assert all(r.startswith("You are starting chats too quickly. Try again in ") for r in refusals if r)
        assert await second.start_refusal("web:00000000000000cd") is None  # another person is not held up
        # Someone several people share (a network of cookie-less clients) gets max_shared_starts.
        many = await asyncio.gather(*((first, second)[n % 2].start_refusal("web:net", shared=True) for n in range(60)))
        assert many.count(None) == 60
        # A cooldown between two starts holds across instances too.
        cool = Moderator(PolicySection.model_validate({"start_cooldown": 30}), one)
        other = Moderator(PolicySection.model_validate({"start_cooldown": 30}), two)
        assert await cool.start_refusal("discord:1") is None
        wait = await other.start_refusal("discord:1")
        assert wait is not None and "Try again in" in wait
        # The bucket expires once it can refuse nothing: Redis keeps no key per person for ever.
        raw = one.redis
        ttl = await raw.pttl(f"{one.prefix}limit:starts:discord:1")
        assert 30_000 < ttl <= 32_000
    finally:
        await one.close()
        await two.close()


async def test_a_store_nobody_shares_leaves_the_limit_to_the_process():
    from bridge.policy.config import PolicySection
    from bridge.policy.moderator import Moderator

    store = MemoryStore()
    assert await store.spend_shared("starts", "k", 1.0, 1.0) is None
    moderator = Moderator(PolicySection.model_validate({"max_starts": 2, "start_cooldown": 0}), store)
    assert [await moderator.start_refusal("web:1") is None for _ in range(3)] == [True, True, False]
