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


def test_block_is_permanent():
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
