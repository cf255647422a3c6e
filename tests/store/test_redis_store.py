"""RedisStore against a real redis-server: the Store contract, the prefix marker, old or locked servers, passwords."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from bridge.events import Room
from bridge.store import PASSWORD_ENV, SessionRecord, SQLiteStore, StoreError, open_store, parse_store_url
from bridge.store.marker import PrefixMarker
from bridge.store.redis import APP, SCHEMA, redis_version
from tests.redisproc import RedisServer, free_port, make_tls_files

PREFIX = "sbtest:"


async def open_redis(url: str, instance: str = "a", *, prefix: str = PREFIX, lease: float = 5.0, environ=None, **kw):
    return await open_store(parse_store_url(url), prefix=prefix, instance=instance, lease=lease, environ=environ or {}, **kw)


@pytest.fixture(params=["sqlite", "redis"])
async def any_store(request, tmp_path):
    """The same contract is checked on both stores."""
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "s.db")
    else:
        server = request.getfixturevalue("redis_server")
        store = await open_redis(server.url)
    yield store
    await store.close()


async def test_contract_round_trip_on_both_stores(any_store):
    store = any_store
    first = SessionRecord(Room("discord", "1:2"), "chatting", "omegle", "handle-1", {"mode": "random", "interests": ["a"]}, created=100.0,
                          refs='{"p":"ab","n":1,"m":[["ab.1","9","hi",0,0,0]],"t":[]}')  # fmt: skip
    second = SessionRecord(Room("web", "x"), "searching", "hub", None, {}, created=50.0)
    await store.save_session(first)
    await store.save_session(second)
    got = await store.sessions()
    assert [(r.room, r.state, r.backend, r.handle, r.start, r.created, r.refs) for r in got] == [
        (Room("web", "x"), "searching", "hub", None, {}, 50.0, None),
        (Room("discord", "1:2"), "chatting", "omegle", "handle-1", {"mode": "random", "interests": ["a"]}, 100.0, first.refs),
    ]
    first.state = "searching"
    await store.save_session(first)  # replaces, never duplicates
    assert [r.state for r in await store.sessions()] == ["searching", "searching"]
    await store.delete_session(Room("web", "x"))
    await store.delete_session(Room("web", "never-there"))
    assert [r.room for r in await store.sessions()] == [Room("discord", "1:2")]
    kv = store.state_for("platform:discord")
    assert await kv.get("counter") is None
    await kv.set("counter", "41")
    await kv.set("counter", "42")
    assert await kv.get("counter") == "42"
    assert await store.state_for("platform:matrix").get("counter") is None  # namespaces are apart
    await kv.set("counter", None)
    assert await kv.get("counter") is None


async def test_sessions_are_owned_per_instance_and_survive_a_clean_reopen(redis_server):
    a = await open_redis(redis_server.url, "a")
    b = await open_redis(redis_server.url, "b")
    try:
        await a.save_session(SessionRecord(Room("web", "r1"), "chatting", "hub", "h1", {}))
        await b.save_session(SessionRecord(Room("web", "r2"), "searching", "hub", None, {}))
        assert [(r.room.id, r.owner) for r in await a.sessions()] == [("r1", "a")]
        assert [(r.room.id, r.owner) for r in await b.sessions()] == [("r2", "b")]
        assert [r.room.id for r in await b.sessions_of("a")] == ["r1"]
        assert await a.instances() == {"a": True, "b": True}
        await a.state_for("backend:hub").set("k", "v")
        assert await b.state_for("backend:hub").get("k") == "v"  # plugin state is shared
    finally:
        await a.close()
    again = await open_redis(redis_server.url, "a")  # a clean stop gave the lease up: no wait
    try:
        assert [(r.room.id, r.handle, r.owner) for r in await again.sessions()] == [("r1", "h1", "a")]
    finally:
        await again.close()
        await b.close()


async def test_keys_under_the_prefix_that_are_not_ours_are_refused_and_untouched(redis_server):
    raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    try:
        await raw.set(f"{PREFIX}users:1", "alice")
        with pytest.raises(StoreError, match=r"bridge\.store: .*did not write.*left untouched"):
            await open_redis(redis_server.url)
        assert sorted(await raw.keys("*")) == [f"{PREFIX}users:1"]
        assert await raw.get(f"{PREFIX}users:1") == "alice"
        # Another prefix is another namespace: it opens, and its marker says whose it is.
        store = await open_redis(redis_server.url, prefix="other:")
        await store.close()
        assert await raw.hgetall("other:meta") == {"app": APP, "schema": SCHEMA, "epoch": store.epoch}
        # A marker of another schema version is refused too, before anything is written.
        await raw.hset("other:meta", "schema", "99")
        before = sorted(await raw.keys("*"))
        with pytest.raises(StoreError, match=r"bridge\.store: .*schema '99'.*nothing was touched"):
            await open_redis(redis_server.url, prefix="other:")
        assert sorted(await raw.keys("*")) == before
        # Even a foreign key with the very name of the Streams probe is neither written nor deleted.
        await raw.set("third:probe", "theirs")
        with pytest.raises(StoreError, match="did not write"):
            await open_redis(redis_server.url, prefix="third:")
        assert await raw.get("third:probe") == "theirs" and not await raw.exists("third:meta")
    finally:
        await raw.aclose()


def test_prefix_with_glob_characters_only_matches_itself():
    from bridge.store.marker import glob_escape as _glob_escape

    assert _glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


async def test_redis_without_streams_is_a_clear_error(tmp_path):
    server = RedisServer(tmp_path / "r", extra=["--rename-command", "XADD", ""]).start()
    try:
        with pytest.raises(StoreError, match=r"bridge\.store: .*has no XADD: scale-out needs Streams \(Redis 5\.0 or newer"):
            await open_redis(server.url)
    finally:
        server.stop()


def test_version_check_reads_info_server():
    assert redis_version({"redis_version": "7.0.15"}) == (7, 0)
    assert redis_version({"redis_version": "4.0.14"}) < (5, 0)
    assert redis_version({}) == (0, 0)


async def test_passwords_from_the_url_or_the_environment_never_in_messages(tmp_path):
    server = RedisServer(tmp_path / "r", password="s3cret-pw").start()
    try:
        with pytest.raises(StoreError) as missing:
            await open_redis(server.url)
        assert f"requires a password: set {PASSWORD_ENV}" in str(missing.value) and "bridge.store" in str(missing.value)
        wrong = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
        with pytest.raises(StoreError) as refused:
            await open_redis(wrong)
        assert "refused the password" in str(refused.value) and "wrong-pw" not in str(refused.value)
        with_env = await open_redis(wrong, environ={PASSWORD_ENV: "s3cret-pw"})  # the environment wins
        await with_env.save_session(SessionRecord(Room("web", "r"), "searching", "hub"))
        await with_env.close()
        in_url = await open_redis(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0")
        assert [r.room.id for r in await in_url.sessions()] == ["r"]
        assert "s3cret-pw" not in repr(in_url.url) and "s3cret-pw" not in in_url.url.redacted()
        await in_url.close()
    finally:
        server.stop()


async def test_unreachable_redis_and_missing_database_at_start(redis_server):
    with pytest.raises(StoreError, match=r"bridge\.store: cannot reach Redis at redis://127\.0\.0\.1:\d+/0"):
        await open_redis(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match=r"bridge\.store: .*/99 refused the connection: DB index is out of range"):
        await open_redis(redis_server.url.replace("/0", "/99"))


async def test_rediss_verifies_the_server_certificate(tmp_path, monkeypatch):
    cert, key, ca = make_tls_files(tmp_path / "tls")
    server = RedisServer(tmp_path / "r", tls=(cert, key, ca)).start()
    try:
        assert server.url.startswith("rediss://")
        # Certificates are checked against the system's CAs (OpenSSL's SSL_CERT_FILE here): an unknown CA fails.
        other = make_tls_files(tmp_path / "other")[2]
        monkeypatch.setenv("SSL_CERT_FILE", str(other))
        with pytest.raises(StoreError, match=r"bridge\.store: cannot reach Redis at rediss://127\.0\.0\.1:\d+/0: .*certificate verify failed"):
            await open_redis(server.url)
        with pytest.raises(StoreError, match=r"bridge\.store: cannot reach Redis at redis://"):
            await open_redis(server.url.replace("rediss://", "redis://"))  # plain text to a TLS port
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        store = await open_redis(server.url)
        await store.save_session(SessionRecord(Room("web", "tls"), "searching", "hub"))
        assert [r.room.id for r in await store.sessions()] == ["tls"]
        await store.close()
    finally:
        server.stop()


async def test_add_is_one_atomic_step_on_both_stores(any_store):
    import asyncio

    store = any_store
    assert await store.add("ns", "n") == 1
    await store.set("ns", "old", "41")  # a counter written by `set` before (a moderation log's log:next)
    assert await store.add("ns", "old") == 42 and await store.get("ns", "old") == "42"
    got = await asyncio.gather(*(store.add("ns", "n") for _ in range(200)))
    assert sorted(got) == list(range(2, 202))  # every caller got its own number


async def test_two_instances_on_one_redis_never_give_two_log_records_one_number(redis_server):
    import asyncio

    from bridge.policy.sanctions import Sanctions

    one, two = await open_redis(redis_server.url, "a"), await open_redis(redis_server.url, "b")
    try:
        first, second = Sanctions(one, log_size=1000), Sanctions(two, log_size=1000)
        await asyncio.gather(*(s.ban(f"web:{n:016x}", 60.0, f"r{n}") for n, s in enumerate([first, second] * 100)))
        records = await first.log_records()
        assert sorted(r.seq for r in records) == list(range(200))
        assert sorted(r.reason for r in records) == sorted(f"r{n}" for n in range(200))
    finally:
        await one.close()
        await two.close()


async def test_instances_starting_at_the_same_moment_on_an_empty_prefix_all_start(redis_server):
    # Each round: a fresh prefix, three instances opening at once. One marks the prefix; the others
    # must read no marker or a whole one (a half-written one read as "schema None" refused them).
    async def open_later(name: str, prefix: str, turns: int):
        for _ in range(turns):  # the second and third start a few loop turns later: inside the first's marking
            await asyncio.sleep(0)
        return await open_redis(redis_server.url, name, prefix=prefix)

    for round_ in range(40):
        prefix = f"race{round_}:"
        opened = await asyncio.gather(
            *(open_later(name, prefix, turns) for name, turns in (("a", 0), ("b", round_ // 2), ("c", round_))),
            return_exceptions=True,
        )
        try:
            assert [type(s).__name__ for s in opened] == ["RedisStore"] * 3, opened
            assert len({s.epoch for s in opened}) == 1  # one marking, seen by all three
        finally:
            for store in opened:
                if not isinstance(store, BaseException):
                    await store.close()


async def test_keys_an_instance_wrote_after_marking_the_prefix_while_another_checked_it_are_not_foreign(redis_server):
    # b reads no marker; before it scans the prefix, a marks the prefix and writes its own keys
    # (two daemons started together on a fresh Redis): b must take them for ours, not refuse to start.
    prefix = "meanwhile:"
    raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
    first = None
    read_marker = raw.hgetall

    async def hgetall(key):
        nonlocal first
        meta = await read_marker(key)
        if first is None:
            first = await open_redis(redis_server.url, "a", prefix=prefix)
        return meta

    raw.hgetall = hgetall
    try:
        marker = PrefixMarker(raw, parse_store_url(redis_server.url), prefix)
        assert await marker.check_prefix() is False  # marked (by a), not foreign and not fresh
        written = set(await raw.keys(f"{prefix}*")) - {f"{prefix}meta"}
        assert written  # a's keys were there when the prefix was scanned
    finally:
        if first is not None:
            await first.close()
        await raw.aclose()
