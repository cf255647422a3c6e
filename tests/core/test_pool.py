"""The hub's pure matching pool: bounded scans, buckets cleaned up, cool-downs and blocks."""

from plugins.hub.pool import ANSWER, ASK, GROUP, INTERESTS, RANDOM, Pool, Ticket


def t(user, kind=RANDOM, **kw):
    return Ticket(user=user, kind=kind, **kw)


def test_random_pairs_first_compatible():
    pool = Pool()
    assert pool.arrive(t("a")) is None
    match = pool.arrive(t("b"))
    assert [m.user for m in match.members] == ["a", "b"] and pool.waiting == 0


def test_interest_buckets_emptied_after_matching():
    pool = Pool()
    pool.arrive(t("a", INTERESTS, interests=frozenset({"x", "y"})))
    match = pool.arrive(t("b", INTERESTS, interests=frozenset({"y"})))
    assert match.common == ("y",)
    assert pool._buckets == {}  # no empty bucket left behind for "x"


def test_scan_is_bounded_by_scan_limit():
    clock = [0.0]
    pool = Pool(scan_limit=4, repair_cooldown=10, clock=lambda: clock[0])
    for n in range(100):
        pool.arrive(t(f"w{n}"))  # pairs among themselves: 50 pairs
    assert pool.waiting == 0
    for n in range(10):
        pool.parted(["new", f"x{n}"])
        for m in range(n):
            pool.block(f"x{m}", f"x{n}")  # the waiting ones refuse each other
        pool.arrive(t(f"x{n}"))
    assert pool.waiting == 10
    calls = []
    original = pool.compatible
    pool.compatible = lambda a, b: calls.append(1) or original(a, b)
    assert pool.arrive(t("new")) is None  # the first 4 candidates are all on cool-down
    assert len(calls) == 4


def test_cooldown_expires():
    clock = [0.0]
    pool = Pool(repair_cooldown=5, clock=lambda: clock[0])
    pool.parted(["a", "b"])
    pool.arrive(t("a"))
    assert pool.arrive(t("b")) is None
    clock[0] = 6
    assert pool.arrive(t("c")) is not None  # c pairs with a (the oldest)
    assert pool.arrive(t("a2")) is not None  # a2 with b


def test_block_holds():
    pool = Pool(repair_cooldown=0)
    pool.block("a", "b")
    pool.arrive(t("a"))
    assert pool.arrive(t("b")) is None


def test_spy_needs_one_asker_and_two_answerers():
    pool = Pool()
    assert pool.arrive(t("x", ANSWER)) is None
    assert pool.arrive(t("s", ASK, question="q")) is None
    match = pool.arrive(t("y", ANSWER))
    assert match.kind == ASK and match.members[0].user == "s" and match.question == "q"


def test_group_of_three():
    pool = Pool()
    assert pool.arrive(t("a", GROUP)) is None
    assert pool.arrive(t("b", GROUP)) is None
    assert len(pool.arrive(t("c", GROUP)).members) == 3


def test_leave_removes_from_every_bucket():
    pool = Pool()
    ticket = t("a", INTERESTS, interests=frozenset({"x", "y", "z"}))
    pool.arrive(ticket)
    pool.leave(ticket)
    assert pool.waiting == 0 and pool._buckets == {}


# ---- blocks after a report: bounded, and never a second meeting within their time ---------------

from plugins.hub.blocks import DAY, Blocks  # noqa: E402


def test_a_reported_pair_is_not_paired_until_the_block_expires():
    now = [1000.0]
    pool = Pool(repair_cooldown=0, blocks=Blocks(ttl=30 * DAY, clock=lambda: now[0]))
    pool.block("a", "b")
    pool.arrive(t("a"))
    now[0] += 30 * DAY - 1
    assert pool.arrive(t("b")) is None  # still blocked a second before the end
    now[0] += 2
    assert pool.arrive(t("b2")) is not None  # a waits; the expired block does not stand in the way
    pool.arrive(t("b"))
    assert [m.user for m in pool.arrive(t("a")).members] == ["b", "a"]
    assert len(pool.blocks) == 0


def test_a_user_who_reports_everyone_only_drops_their_own_oldest_reports():
    now = [0.0]
    blocks = Blocks(per_reporter=3, limit=1000, clock=lambda: now[0])
    blocks.add("victim", "spammer")  # someone else's report
    for n in range(10):
        now[0] += 1
        blocks.add("spammer", f"s{n}")
    assert blocks.blocked("victim", "spammer")
    assert [other for reporter, other, _ in blocks.items() if reporter == "spammer"] == ["s7", "s8", "s9"]
    assert not blocks.blocked("spammer", "s6") and blocks.blocked("s9", "spammer")
    assert len(blocks) == 4


def test_blocks_in_all_are_bounded_oldest_first_and_a_new_report_renews():
    now = [0.0]
    blocks = Blocks(ttl=100, per_reporter=10, limit=5, clock=lambda: now[0])
    for n in range(5):
        now[0] += 1
        blocks.add(f"r{n}", "x")
    now[0] += 1
    blocks.add("r0", "x")  # reported again: renewed, now the newest
    blocks.add("r5", "x")
    assert len(blocks) == 5
    assert [reporter for reporter, _, _ in blocks.items()] == ["r2", "r3", "r4", "r0", "r5"]
    assert not blocks.blocked("r1", "x")
    now[0] = 105.5  # r2, r3 and r4 expire (reported at 3, 4 and 5, with a ttl of 100); r0 and r5 at 106
    assert not blocks.blocked("r4", "x") and blocks.blocked("r0", "x")
    assert len(blocks) == 2


def test_blocks_round_trip_with_their_expiry_in_any_order():
    now = [500.0]
    blocks = Blocks(ttl=100, clock=lambda: now[0])
    blocks.add("a", "b", until=560.0)
    blocks.add("c", "d", until=520.0)  # restored out of order: still expires first
    blocks.add("e", "f", until=400.0)  # already expired: not kept
    blocks.add("g", "h", until=10_000.0)  # never longer than the ttl from now
    assert list(blocks.items()) == [("c", "d", 520.0), ("a", "b", 560.0), ("g", "h", 600.0)]
    now[0] = 530.0
    assert not blocks.blocked("c", "d") and blocks.blocked("b", "a")
    assert len(blocks) == 2


async def test_the_hub_keeps_blocks_and_their_expiry_across_a_restart():
    import asyncio
    import time

    from bridge.events import Connected, Report, Start
    from bridge.store import MemoryStore
    from plugins.hub.backend import HubBackend
    from plugins.hub.config import HubConfig

    store = MemoryStore()
    await store.set("hub", "blocked", "old-a\told-b")  # written before blocks had an expiry

    async def first(chat, kind):
        async for event in chat.events():
            if isinstance(event, kind):
                return event

    hub = HubBackend("hub", HubConfig(plugin="hub", block_days=2, repair_cooldown=0), store.state_for("hub"))
    await hub.start()
    assert hub.pool.blocks.blocked("old-a", "old-b")
    a = await hub.connect(Start(user="a"))
    b = await hub.connect(Start(user="b"))
    await asyncio.wait_for(first(a, Connected), 5)
    await a.send(Report())
    async with asyncio.timeout(5):
        while "a\tb" not in (await store.get("hub", "blocked") or ""):
            await asyncio.sleep(0.01)
    saved = dict(line.rsplit("\t", 1) for line in (await store.get("hub", "blocked")).splitlines())
    assert set(saved) == {"old-a\told-b", "a\tb"}
    assert all(abs(float(until) - (time.time() + 2 * 86_400)) < 60 for until in saved.values())
    await a.aclose()
    await b.aclose()
    await hub.stop()

    again = HubBackend("hub", HubConfig(plugin="hub", block_days=2, repair_cooldown=0), store.state_for("hub"))
    await again.start()
    assert [(r, o) for r, o, _ in again.pool.blocks.items()] == [("old-a", "old-b"), ("a", "b")]
    assert again.pool.arrive(t("b")) is None
    assert again.pool.arrive(t("a")) is None  # still blocked after the restart
    assert again.pool.arrive(t("c")) is not None


async def test_the_hub_reports_waiting_users_per_mode_for_status():
    import asyncio

    from bridge.events import Connected, Mode, Start, Waiting
    from tests.helpers import running

    async with running({"backends": {"hub": {"plugin": "hub", "interest_fallback": 60}}}) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("r", Start())
        rec.send("i", Start(interests=("chess",)))
        rec.send("q", Start(mode=Mode.ASK, question="tea or coffee?"))
        rec.send("g", Start(mode=Mode.GROUP))
        for room in "riqg":
            await rec.wait_for(room, Waiting)
        async with asyncio.timeout(5):
            while bridge.status()["waiting"] != {"random": 2, "ask": 1, "answer": 0, "group": 1}:
                await asyncio.sleep(0.01)
        assert bridge.backends["hub"].stats()["chats"] == 0
        rec.send("x", Start())  # pairs with r, the first random one
        await rec.wait_for("r", Connected)
        assert bridge.status()["waiting"] == {"random": 1, "ask": 1, "answer": 0, "group": 1}
        assert bridge.backends["hub"].stats()["chats"] == 1


def test_a_shared_moderation_key_with_own_pairing_keys_still_pairs_but_blocks_and_cools_down_apart():
    clock = [0.0]
    pool = Pool(repair_cooldown=5, clock=lambda: clock[0])
    # two clients of one network: one moderation key ("net"), each its own pairing key
    assert pool.arrive(t("net", pairing="c1")) is None
    match = pool.arrive(t("net", pairing="c2"))
    assert match is not None and [m.pairing for m in match.members] == ["c1", "c2"]
    # the same pairing key never meets itself
    pool.arrive(t("x", pairing="same"))
    assert pool.arrive(t("y", pairing="same")) is None
    # a report block is between moderation keys: it holds for every client of the network
    pool2 = Pool(repair_cooldown=0)
    pool2.block("net", "bob")
    pool2.arrive(t("net", pairing="c3"))
    assert pool2.arrive(t("bob")) is None
    assert pool2.arrive(t("net", pairing="c4")) is not None  # c3 and c4 still meet
    # a cool-down is between pairing keys: the network's other clients are not kept from "b"
    pool3 = Pool(repair_cooldown=5, clock=lambda: clock[0])
    pool3.parted(["c5", "b"])
    pool3.arrive(t("b"))
    assert pool3.arrive(t("net", pairing="c5")) is None
    met = pool3.arrive(t("net", pairing="c6"))
    assert met is not None and [m.pairing for m in met.members] == ["b", "c6"]  # b waited longest


def test_cooldown_map_has_a_global_bound_and_keeps_the_newest():
    # A churn flood parts more pairs within one cool-down than the bound: the oldest go first.
    clock = [0.0]
    pool = Pool(repair_cooldown=60, clock=lambda: clock[0], max_cooling=10)
    for n in range(100):
        pool.parted([f"a{n}", f"b{n}"])
        clock[0] += 0.01
    assert len(pool._recent) == 10
    assert not pool.compatible(t("b99"), t("a99"))  # the newest pairs are still kept apart (either order)
    assert not pool.compatible(t("a90"), t("b90"))
    assert pool.compatible(t("a0"), t("b0"))  # the oldest was forgotten: it may meet again
    assert pool.compatible(t("a89"), t("b89"))
