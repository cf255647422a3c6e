"""Metrics: the core's own listener serves /metrics (parsed by prometheus_client), /healthz and /status."""

import asyncio
import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.events import Connected, Message, Start, Waiting
from bridge.metrics import Metrics, counter_key
from bridge.store import MemoryStore
from tests.core.scripted import ScriptedBackend
from tests.helpers import RECORDING, running


class StatsBackend(ScriptedBackend):
    """A scripted backend that reports figures the way the hub's `stats()` hook does."""

    connected = True

    def stats(self):
        return {"waiting": {"random": 2, "group": 1}, "connected": self.connected}


STATS = "tests.core.test_metrics:StatsBackend"


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(fams: dict, family: str, name: str | None = None, **labels) -> float:
    found = [s.value for s in fams[family].samples if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, fams[family].samples)
    return found[0]


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, response.headers["Content-Type"], await response.text()


async def test_core_listener_serves_parseable_metrics_with_help_and_type():
    data = {"platforms": {"rec": {"plugin": RECORDING}}, "backends": {"hub": {"plugin": "hub"}}}
    async with running(data, metrics_bind="127.0.0.1:0") as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        rec.send("b", Start())
        await rec.wait_for("a", Connected)
        await rec.wait_for("b", Connected)
        rec.send("a", Message("hello"))
        await rec.wait_for("b", lambda e: isinstance(e, Message) and e.text == "hello")
        delivered = sum(len(events) for events in rec.shown.values())  # before shutdown adds its notices
        status, ctype, text = await scrape(bridge.health.port)
    assert status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype
    fams = families(text)
    for name in ("stranger_bridge_sessions", "stranger_bridge_platform_ready", "stranger_bridge_messages_relayed"):
        assert f"# HELP {name}" in text and f"# TYPE {name}" in text
    assert sample(fams, "stranger_bridge_sessions", platform="rec", state="chatting") == 2
    assert sample(fams, "stranger_bridge_platform_ready", platform="rec") == 1
    assert fams["stranger_bridge_messages_relayed"].type == "counter"
    assert sample(fams, "stranger_bridge_messages_relayed", "stranger_bridge_messages_relayed_total", direction="to_user") == 1
    # Every delivery counted, whatever notices came before Connected.
    assert sample(fams, "stranger_bridge_deliver_attempts", "stranger_bridge_deliver_attempts_total", platform="rec") == delivered
    assert sample(fams, "stranger_bridge_queue_depth", owner="core", queue="session_inbox") >= 0
    assert fams["stranger_bridge_store_seconds"].type == "histogram"
    assert sample(fams, "stranger_bridge_store_seconds", "stranger_bridge_store_seconds_count", op="save_session") >= 2
    assert sample(fams, "stranger_bridge_pairing_wait_seconds", "stranger_bridge_pairing_wait_seconds_count") == 2


async def test_delivery_retries_and_failures_per_platform_and_reason():
    data = {"platforms": {"rec": {"plugin": RECORDING, "fail_times": 4}}, "backends": {"s": {"plugin": STATS}}}
    async with running(data, metrics_bind="127.0.0.1:0", default_backend="s", deliver_attempts=3) as bridge:
        rec = bridge.platforms["rec"]
        rec.send("a", Start())
        chat = await bridge.backends["s"].next_chat(0)
        chat.stranger(Connected())
        chat.stranger(Message("second try works"))
        await rec.wait_for("a", lambda e: isinstance(e, Message))
        shown = sum(len(events) for events in rec.shown.values())
        _, _, text = await scrape(bridge.health.port)
    fams = families(text)
    # Waiting: 3 attempts, all failed (given up); Connected: 1 failed, then shown; Message: shown at once.
    assert sample(fams, "stranger_bridge_deliver_retries", "stranger_bridge_deliver_retries_total", platform="rec", reason="ConnectionError") == 3
    assert sample(fams, "stranger_bridge_deliver_failures", "stranger_bridge_deliver_failures_total", platform="rec", reason="ConnectionError") == 1
    assert sample(fams, "stranger_bridge_deliver_attempts", "stranger_bridge_deliver_attempts_total", platform="rec") == 4 + shown


async def test_backend_health_and_waiting_users_reach_metrics_status_and_healthz():
    data = {"platforms": {"rec": {"plugin": RECORDING}}, "backends": {"s": {"plugin": STATS}}}
    async with running(data, metrics_bind="127.0.0.1:0", default_backend="s") as bridge:
        port = bridge.health.port
        code, _, body = await scrape(port, "/healthz")
        assert (code, body) == (200, "healthy")
        _, ctype, raw = await scrape(port, "/status")
        report = json.loads(raw)
        assert ctype.startswith("application/json")
        assert report["health"] == "healthy" and report["platforms"] == {"rec": {"ready": True}}
        assert report["waiting"] == {"random": 2, "group": 1} and report["uptime"] >= 0
        assert sample(families((await scrape(port))[2]), "stranger_bridge_backend_up", backend="s") == 1
        StatsBackend.connected = False
        try:
            code, _, body = await scrape(port, "/healthz")
            assert (code, body) == (503, "degraded\nbackend s: not connected")
            assert sample(families((await scrape(port))[2]), "stranger_bridge_backend_up", backend="s") == 0
        finally:
            StatsBackend.connected = True
        bridge.metrics.set_ready("rec", False)  # how a platform says it lost its connection
        code, _, body = await scrape(port, "/healthz")
        assert (code, body) == (503, "degraded\nplatform rec: not ready")
        assert json.loads((await scrape(port, "/status"))[2])["platforms"] == {"rec": {"ready": False}}


async def test_listener_is_off_by_default():
    async with running() as bridge:
        assert bridge.health is None


async def test_taken_metrics_address_is_a_clear_start_error():
    from bridge.app import StartError

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            async with running(metrics_bind=f"127.0.0.1:{port}"):
                raise AssertionError("started on a taken address")
        except StartError as exc:
            assert f"127.0.0.1:{port}" in str(exc)
    finally:
        server.close()
        await server.wait_closed()


def test_labels_are_escaped_and_survive_a_round_trip():
    metrics = Metrics()
    hostile = 'a"b\\c\nd} x{y="1"'
    metrics.inc("errors", kind=hostile)
    metrics.sessions_source(lambda: {("web", "chatting"): 3})
    fams = families(metrics.prometheus())
    assert sample(fams, "stranger_bridge_errors", "stranger_bridge_errors_total", kind=hostile) == 1
    assert sample(fams, "stranger_bridge_sessions", platform="web", state="chatting") == 3


def test_session_gauges_are_read_only_at_scrape_time():
    metrics = Metrics()
    calls = []

    def source():
        calls.append(1)
        return {("web", "chatting"): 20_000}

    metrics.sessions_source(source)
    metrics.inc("reports")
    assert calls == []  # counting does not touch sessions
    assert sample(families(metrics.prometheus()), "stranger_bridge_sessions", platform="web", state="chatting") == 20_000
    assert len(calls) == 1


def test_gauge_sources_of_several_owners_are_shown_together():
    metrics = Metrics()
    metrics.gauge_source("queue_depth", ("owner", "queue"), lambda: {("discord", "outbox"): 4})
    metrics.gauge_source("queue_depth", ("owner", "queue"), lambda: {("matrix", "outbox"): 1})
    fams = families(metrics.prometheus())
    assert sample(fams, "stranger_bridge_queue_depth", owner="discord", queue="outbox") == 4
    assert sample(fams, "stranger_bridge_queue_depth", owner="matrix", queue="outbox") == 1
    try:
        metrics.gauge_source("queue_depth", ("owner",), dict)
    except ValueError:
        pass
    else:
        raise AssertionError("mismatched label names accepted")


def test_histogram_buckets_are_cumulative_and_inclusive():
    metrics = Metrics()
    for value in (0.1, 0.1, 0.2, 400.0):
        metrics.observe_wait(value)
    fams = families(metrics.prometheus())
    buckets = {s.labels["le"]: s.value for s in fams["stranger_bridge_pairing_wait_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets["0.1"] == 2 and buckets["0.5"] == 3 and buckets["300.0"] == 3 and buckets["+Inf"] == 4
    assert sample(fams, "stranger_bridge_pairing_wait_seconds", "stranger_bridge_pairing_wait_seconds_sum") == 400.4


async def test_memory_store_bridge_still_counts_store_latency():
    async with running(store=MemoryStore(), metrics_bind="127.0.0.1:0") as bridge:
        _, _, text = await scrape(bridge.health.port)
    assert sample(families(text), "stranger_bridge_store_seconds", "stranger_bridge_store_seconds_count", op="sessions") >= 1


async def test_web_platform_still_serves_the_core_figures_parseably():
    async with running({"platforms": {"web": {"plugin": "web", "bind": "127.0.0.1:0"}}}) as bridge:
        async with aiohttp.ClientSession() as http:
            async with http.get(bridge.platforms["web"].url + "/metrics") as response:
                assert response.status == 200
                text = await response.text()
    fams = families(text)
    assert sample(fams, "stranger_bridge_platform_ready", platform="web") == 1
    assert "stranger_bridge_web_clients" in fams and "# HELP stranger_bridge_sessions" in text


def test_a_prebuilt_counter_key_counts_the_same_series_as_inc():
    metrics = Metrics()
    key = counter_key("messages_relayed", direction="to_user")
    metrics.add(key)
    metrics.add(key, 2)
    metrics.inc("messages_relayed", direction="to_user")
    assert metrics.counter("messages_relayed", direction="to_user") == 4
    metrics.delivery("web", "ok")
    metrics.delivery("web", "ok")
    assert metrics.counter("deliver_attempts", platform="web") == 2
    fams = families(metrics.prometheus())
    assert sample(fams, "stranger_bridge_messages_relayed", "stranger_bridge_messages_relayed_total", direction="to_user") == 4


async def test_session_counts_are_counted_once_per_loop_turn_and_follow_every_change():
    data = {"platforms": {"rec": {"plugin": RECORDING}}, "backends": {"hub": {"plugin": "hub"}}}
    async with running(data) as bridge:
        rec = bridge.platforms["rec"]
        assert bridge.metrics.local_online() == 0
        first = bridge.metrics.sessions()
        assert bridge.metrics.sessions() is first  # a burst of /start answers in one turn counts once
        rec.send("a", Start())
        await rec.wait_for("a", Waiting)
        assert bridge.metrics.sessions() == {("rec", "searching"): 1} and bridge.metrics.local_online() == 1
        rec.send("b", Start())
        await rec.wait_for("b", Connected)
        await rec.wait_for("a", Connected)
        assert bridge.metrics.sessions() == {("rec", "chatting"): 2} and bridge.metrics.local_online() == 2
