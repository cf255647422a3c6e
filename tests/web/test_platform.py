"""The platform's own rules over real sockets: held batches, bounded queues, config, default run."""

from __future__ import annotations

import pytest

from bridge.config import DEFAULT_CONFIG, ConfigError, parse_config
from bridge.events import Disconnected, Message, Question, Reason, Room, ServerNotice
from plugins.web.config import WebConfig
from plugins.web.platform import WebPlatform
from tests.helpers import running

from .client import RawClient
from .conftest import web_config


async def test_ignorable_events_wait_for_one_the_client_acts_on(http):
    async with running(web_config(poll_window=0.3)) as bridge:
        web = bridge.platforms["web"]
        client = RawClient(http, web.url)
        await client.start(ask="what is waiting for?")
        room = Room("web", next(iter(web.clients.by_key)))
        await web.deliver(room, Question("held back"))
        assert await client.poll() is None  # a lone `question` is never a batch
        await web.deliver(room, ServerNotice("now"))
        assert await client.poll() == [["question", "held back"], ["serverMessage", "now"]]


async def test_queue_is_bounded_but_the_end_always_arrives(http):
    async with running(web_config(max_queue=10)) as bridge:
        web = bridge.platforms["web"]
        client = RawClient(http, web.url)
        await client.start(ask="flood me?")
        room = Room("web", next(iter(web.clients.by_key)))
        for i in range(30):
            await web.deliver(room, Message(f"m{i}"))
        await web.deliver(room, Disconnected(reason=Reason.STRANGER))
        batch = await client.poll()
        assert [e[1] for e in batch[:10]] == [f"m{i}" for i in range(10)]
        assert batch[10][0] == "serverMessage" and "not shown" in batch[10][1]
        assert batch[-1] == ["strangerDisconnected"] and len(batch) == 12
        assert len(web.clients) == 0  # the id died with the end of the chat
        assert web.counted("dropped", "queue_full") == 20  # each refused event counted (m10 .. m29)


def test_default_config_serves_the_web_platform():
    cfg = parse_config(DEFAULT_CONFIG, env=False)
    assert cfg.platform_classes["web"] is WebPlatform
    assert cfg.platforms["web"].bind == "127.0.0.1:8080" and cfg.platforms["web"].poll_window == 20.0


@pytest.mark.parametrize(
    "table",
    [{"bind": "8080"}, {"bind": "host:port"}, {"bind": "h:70000"}, {"cors_origins": ["https://a.example/path"]},
     {"poll_window": 0}, {"max_body_bytes": 10}, {"unknown": 1}],
)
def test_bad_config_is_refused(table):
    with pytest.raises(ConfigError):
        parse_config({"platforms": {"web": {"plugin": "web", **table}}}, env=False)
    assert WebConfig(plugin="web", bind="[::1]:0").bind == "[::1]:0"


async def test_metrics_parse_and_carry_the_servers_own_figures(web, http):
    from prometheus_client.parser import text_string_to_metric_families

    from .client import RawClient

    await RawClient(http, web.url).start(ask="counted?")
    async with http.get(web.url + "/start", headers={"Sec-Fetch-Site": "cross-site"}) as response:
        assert response.status == 403
    async with http.get(web.url + "/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("stranger_bridge_web_clients", (("platform", "web"),))] == 1
    assert samples[("stranger_bridge_web_polls_open", (("platform", "web"),))] == 0
    assert samples[("stranger_bridge_web_connections", (("platform", "web"),))] >= 1
    assert samples[("stranger_bridge_web_started_total", (("mode", "ask"), ("platform", "web")))] == 1
    assert samples[("stranger_bridge_web_refused_total", (("platform", "web"), ("reason", "cross_site")))] == 1
    assert families["stranger_bridge_web_refused"].type == "counter"
