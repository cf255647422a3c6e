"""The Redis pairing script against a real redis-server: modes, blocks, leases, bounded scans, and a two-client race."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis

from plugins.hub.pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM
from plugins.hub.redis_pool import Pairing, RedisPool

PREFIX = "sbtest:"


async def arrive_all(pools: list[RedisPool], arrivals: list[dict]) -> list[Pairing]:
    """Every arrival at once: the i-th through pools[i % 2], 16 in flight per pool (its connection limit)."""
    results: list[Pairing | None] = [None] * len(arrivals)

    async def instance(n: int) -> None:
        queue = [i for i in range(len(arrivals)) if i % len(pools) == n]

        async def worker() -> None:
            while queue:
                i = queue.pop()
                results[i] = await pools[n].arrive(**arrivals[i])

        await asyncio.gather(*(worker() for _ in range(16)))

    await asyncio.gather(*(instance(n) for n in range(len(pools))))
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@pytest.fixture
async def clients(redis_server):
    """Two separate connections, as two instances would have."""
    made = [aioredis.Redis(port=redis_server.port, decode_responses=True, max_connections=16) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


async def test_random_and_languages(clients):
    a = RedisPool(clients[0], prefix=PREFIX, owner="a")
    b = RedisPool(clients[1], prefix=PREFIX, owner="b")
    first = await a.arrive("u1")
    assert first.partner is None
    german = await b.arrive("u2", language="de")
    assert german.partner is None  # another language's bucket
    second = await b.arrive("u3")
    assert second.partner is not None
    assert (second.partner.id, second.partner.user, second.partner.owner) == (first.entry.id, "u1", "a")
    assert await a.waiting() == 0 and await a.waiting(language="de") == 1
    assert await a.leave(first.entry) is False  # already taken: nothing to leave
    assert await b.leave(german.entry) is True and await a.waiting(language="de") == 0


async def test_nobody_is_paired_with_themselves(clients):
    pool = RedisPool(clients[0], prefix=PREFIX, owner="a")
    one = await pool.arrive("same")
    two = await pool.arrive("same")  # a second tab of the same person
    assert one.partner is None and two.partner is None and await pool.waiting() == 2
    third = await pool.arrive("other")
    assert third.partner is not None and third.partner.id == one.entry.id  # the oldest compatible waiter


async def test_interests_pair_on_a_shared_one_and_fall_back_to_random(clients):
    a = RedisPool(clients[0], prefix=PREFIX, owner="a")
    b = RedisPool(clients[1], prefix=PREFIX, owner="b")
    cats = await a.arrive("u1", interests={"cats", "chess"})
    assert cats.partner is None
    none_shared = await b.arrive("u2", interests={"golf"})
    assert none_shared.partner is None
    shared = await b.arrive("u3", interests={"chess", "tea"})
    assert shared.partner is not None and shared.partner.id == cats.entry.id
    assert shared.common == ("chess",)
    assert await a.waiting(interest="cats") == 0  # taken out of every bucket it waited in
    # golf waited long enough: it takes a random stranger, or waits among them too.
    assert (await b.fall_back(none_shared.entry)) == Pairing(none_shared.entry)
    randomer = await a.arrive("u4")
    assert randomer.partner is not None and randomer.partner.user == "u2" and randomer.common == ()
    assert await a.waiting(interest="golf") == 0
    assert await b.fall_back(none_shared.entry) is None  # no longer waiting
    # A fallback that finds a random waiter pairs at once.
    waiting_random = await a.arrive("u5")
    lonely = await b.arrive("u6", interests={"knitting"})
    found = await b.fall_back(lonely.entry)
    assert found is not None and found.partner is not None and found.partner.id == waiting_random.entry.id


async def test_spy_questions_take_an_asker_and_two_answerers_compatible_with_everyone(clients):
    a = RedisPool(clients[0], prefix=PREFIX, owner="a")
    b = RedisPool(clients[1], prefix=PREFIX, owner="b")
    asker = await a.arrive("asker", mode=ASK, question="cats or dogs?")
    assert (asker.kind, asker.members) == ("", ())
    await b.block("asker", "banned")
    assert (await b.arrive("banned", mode=ANSWER)).members == ()  # blocked with the only asker
    spy1 = await b.arrive("spy1", mode=ANSWER)
    assert spy1.members == ()  # the asker is there, but the only other answerer is blocked with them
    spy2 = await a.arrive("spy2", mode=ANSWER)
    assert spy2.kind == ASK and [m.user for m in spy2.members] == ["asker", "spy1", "spy2"]
    assert spy2.members[0].question == "cats or dogs?" and spy2.members[0].owner == "a"
    assert spy2.partner is None  # three people: no single partner
    asker2 = await b.arrive("asker2", mode=ASK, question="tea?")
    assert asker2.members == ()  # only one answerer (banned) waits: a question needs two
    spy3 = await a.arrive("spy3", mode=ANSWER)
    assert [m.user for m in spy3.members] == ["asker2", "banned", "spy3"]
    for user in ("x1", "x2"):
        await a.arrive(user, mode=ANSWER)
    asker3 = await b.arrive("asker3", mode=ASK, question="why?")
    assert asker3.kind == ASK and [m.user for m in asker3.members] == ["asker3", "x1", "x2"]
    assert await a.waiting(ASK) == 0 and await a.waiting(ANSWER) == 0


async def test_groups_of_three_over_two_clients_at_once(clients):
    pools = [RedisPool(client, prefix=PREFIX, owner=f"i{n}") for n, client in enumerate(clients)]
    users = [f"g{i}" for i in range(301)]
    await pools[0].block("g0", "g1")  # never in one group
    results = await arrive_all(pools, [{"user": user, "mode": GROUP} for user in users])
    groups = [tuple(m.id for m in r.members) for r in results if r.members]
    assert all(r.kind == GROUP for r in results if r.members)
    members = [member for group in groups for member in group]
    assert len(members) == len(set(members)) == 3 * len(groups)  # nobody in two groups
    by_id = {r.entry.id: r.entry.user for r in results}
    for group in groups:
        names = {by_id[m] for m in group}
        assert len(names) == 3 and not {"g0", "g1"} <= names
    left = await clients[0].zrange(f"{PREFIX}pool:{GROUP}:en", 0, -1)
    assert set(left) == set(by_id) - set(members)
    # Nobody left waiting could have formed a group: three waiters remain only when two of them are g0 and g1.
    assert len(left) <= 2 or (len(left) == 3 and {"g0", "g1"} <= {by_id[m] for m in left})


async def test_blocked_pairs_never_meet_and_parted_ones_wait_out_the_cool_down(clients):
    pool = RedisPool(clients[0], prefix=PREFIX, owner="a")
    await pool.block("alice", "mallory")
    alice = await pool.arrive("alice")
    mallory = await pool.arrive("mallory")
    assert mallory.partner is None  # both wait: blocked
    bob = await pool.arrive("bob")
    assert bob.partner is not None and bob.partner.user == "alice"
    carol = await pool.arrive("carol")
    assert carol.partner is not None and carol.partner.user == "mallory"
    assert alice.partner is None
    await pool.parted("dave", "erin", cooldown=0.3)
    dave = await pool.arrive("dave")
    erin = await pool.arrive("erin")
    assert erin.partner is None
    assert await pool.leave(erin.entry)
    async with asyncio.timeout(10):  # the cool-down key expires by itself
        while await clients[0].exists(f"{PREFIX}pool:parted:dave\nerin"):
            await asyncio.sleep(0.05)
    again = await pool.arrive("erin")
    assert again.partner is not None and again.partner.id == dave.entry.id


async def test_waiters_of_a_crashed_instance_expire_and_renewed_ones_stay(clients):
    crashed = RedisPool(clients[0], prefix=PREFIX, owner="dead", lease=0.3)
    alive = RedisPool(clients[1], prefix=PREFIX, owner="live", lease=1.5)
    ghost = await crashed.arrive("ghost")  # its owner never renews: it dies with the lease
    kept = await alive.arrive("kept", language="fr")
    arrived = time.monotonic()
    async with asyncio.timeout(20):
        # The live owner's heartbeat, until the ghost is gone and `kept` has outlived its own lease.
        while await clients[0].exists(f"{PREFIX}pool:entry:{ghost.entry.id}") or time.monotonic() - arrived < 2.5:
            assert await alive.renew([kept.entry]) == 1
            await asyncio.sleep(0.1)
    newcomer = await alive.arrive("newcomer")
    assert newcomer.partner is None  # nobody real was waiting: the ghost is not taken ...
    assert await alive.waiting() == 1  # ... and its id was dropped from the bucket on the way
    french = await crashed.arrive("other", language="fr")
    assert french.partner is not None and french.partner.id == kept.entry.id


async def test_each_arrival_looks_at_scan_limit_waiters_at_most(clients):
    pool = RedisPool(clients[0], prefix=PREFIX, owner="a", scan_limit=4)
    for user in ("picky", "z", "picky2"):
        await pool.block(user, "w")
    for _ in range(6):
        await pool.arrive("w")  # six tabs of one person wait (nobody meets themselves)
    assert (await pool.arrive("z")).partner is None  # blocked with w: the 7th waiter
    # z is compatible with picky, but the 7th oldest: past the 4 an arrival looks at, so picky waits.
    picky = await pool.arrive("picky")
    assert picky.partner is None and await pool.waiting() == 8
    wide = RedisPool(clients[0], prefix=PREFIX, owner="a", scan_limit=8)
    found = await wide.arrive("picky2")  # the same arrival with a wider scan finds z
    assert found.partner is not None and found.partner.user == "z"


async def test_a_thousand_arrivals_over_two_clients_never_pair_anyone_twice_or_with_themselves(clients):
    rng = random.Random(10)
    pools = [RedisPool(client, prefix=PREFIX, owner=f"i{n}") for n, client in enumerate(clients)]
    arrivals = []
    for i in range(1000):
        user = f"u{i}" if i % 20 else f"u{i - 1}"  # every 20th arrival is someone already there (a second tab)
        interests = frozenset(rng.sample(["cats", "chess", "tea", "golf"], rng.randint(1, 2))) if i % 3 == 0 else frozenset()
        arrivals.append((user, rng.choice(["en", "de"]), interests))
    pairings = await arrive_all(pools, [{"user": u, "language": lang, "interests": i} for u, lang, i in arrivals])
    results = list(zip(arrivals, pairings))

    assert len(results) == 1000
    entries = {pairing.entry.id: (arrival, pairing) for arrival, pairing in results}
    assert len(entries) == 1000  # every arrival got its own entry
    taken = Counter()
    for (user, lang, interests), pairing in results:
        if pairing.partner is None:
            continue
        partner_arrival, partner_pairing = entries[pairing.partner.id]
        assert pairing.partner.user != user, "paired with themselves"
        assert partner_arrival[1] == lang, "paired across languages"
        assert partner_pairing.partner is None, "took someone who had taken someone"
        assert (not interests) == (not partner_arrival[2]), "random and interests mixed without a fallback"
        if interests:
            assert pairing.common and set(pairing.common) <= interests & partner_arrival[2]
        taken[pairing.partner.id] += 1
        taken[pairing.entry.id] += 1
    assert max(taken.values()) == 1, "an entry was paired twice"
    # Whoever was not paired is still waiting, exactly once; nobody who could have been paired waits.
    waiting_ids = {eid for eid in entries if taken[eid] == 0}
    stored = set()
    for lang in ("en", "de"):
        members = await clients[0].zrange(f"{PREFIX}pool:random:{lang}", 0, -1)
        users = {entries[m][0][0] for m in members}
        assert len(users) <= 1, f"two random waiters of {lang} could have met: {sorted(users)}"
        stored.update(members)
        for interest in ("cats", "chess", "tea", "golf"):
            members = await clients[0].zrange(f"{PREFIX}pool:interests:{lang}:{interest}", 0, -1)
            assert len({entries[m][0][0] for m in members}) <= 1, f"two {interest} waiters of {lang} could have met"
            stored.update(members)
    assert stored == waiting_ids


async def test_one_pairing_key_never_meets_itself_and_blocks_hold_between_users(clients):
    pool = RedisPool(clients[0], prefix=PREFIX, owner="a")
    # Two people behind one network address: one moderation key, two pairing keys; they may meet.
    first = await pool.arrive("net-1", pairing="net-1/a")
    second = await pool.arrive("net-1", pairing="net-1/b")
    assert second.partner is not None and second.partner.id == first.entry.id
    assert second.partner.pairing == "net-1/a" and second.entry.pairing == "net-1/b"
    # The same pairing key under two moderation keys never meets itself.
    one = await pool.arrive("x", pairing="tab")
    two = await pool.arrive("y", pairing="tab")
    assert one.partner is None and two.partner is None
    # A cool-down is on pairing keys: "tab" and "other" just parted.
    await pool.parted("tab", "other", 60)
    assert (await pool.arrive("z", pairing="other")).partner is None
