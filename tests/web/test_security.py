"""Bad inputs over real sockets: foreign and guessed ids, huge bodies, wrong types, poll floods."""

from __future__ import annotations

import asyncio
import json
import re
import secrets

import aiohttp

from bridge.events import Connected, Message, Mode, Start, Waiting
from tests.helpers import running

from .client import RawClient
from .conftest import web_config


async def paired(bridge, http, room: str) -> RawClient:
    rec = bridge.platforms["rec"]
    rec.send(room, Start())
    client = RawClient(http, bridge.platforms["web"].url)
    await client.start()
    await rec.wait_for(room, Connected)
    await client.until("connected")
    return client


async def test_ids_are_long_random_and_only_the_exact_id_acts(bridge, web, http):
    rec = bridge.platforms["rec"]
    victim = await paired(bridge, http, "v")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", victim.id)  # 192 bits from secrets.token_urlsafe
    key = next(iter(web.clients.by_key))  # the room key is not a credential either
    flipped = victim.id[:-1] + ("A" if victim.id[-1] != "A" else "B")
    forged = [key, key[:32], flipped, victim.id.swapcase(), victim.id[:-1], victim.id + "x", secrets.token_urlsafe(24),
              "", " " + victim.id[1:], "%00" * 10]
    attacker = RawClient(http, web.url)
    for fake in forged:
        attacker.id = fake
        for path, fields in (("/send", {"msg": "hijack"}), ("/typing", {}), ("/events", {}), ("/disconnect", {})):
            status, body = await attacker.post(path, **fields)
            assert (status, body) == (400, "fail"), (fake, path)
    # nothing reached the room, and the victim's chat is intact
    assert await victim.post("/send", msg="still here") == (200, "win")
    got = await rec.wait_for("v", Message)
    assert got.text == "still here"
    assert not [m for m in rec.events("v", Message) if m.text == "hijack"]
    assert len(web.clients) == 1


async def test_huge_body_is_413_and_wrong_content_type_is_400(bridge, web, http):
    client = await paired(bridge, http, "b")
    huge = "id=" + client.id + "&msg=" + "x" * (10 * 1024 * 1024)
    try:
        async with http.post(web.url + "/send", data=huge.encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
            assert response.status == 413
    except aiohttp.ClientOSError:
        raise AssertionError("the server dropped the connection instead of answering 413") from None
    for ctype, body in (
        ("application/json", json.dumps({"id": client.id, "msg": "json"})),
        ("text/plain", f"id={client.id}&msg=plain"),
        ("multipart/form-data; boundary=x", f"--x\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n{client.id}\r\n--x--\r\n"),
    ):
        async with http.post(web.url + "/send", data=body.encode(), headers={"Content-Type": ctype}) as response:
            assert response.status == 400, ctype
    async with http.post(web.url + "/send", data=b"id=%ff%fe&msg=x",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
        assert response.status == 400  # not UTF-8
    rec = bridge.platforms["rec"]
    await asyncio.sleep(0.2)
    assert not rec.events("b", Message)
    assert await client.post("/send", msg="fine") == (200, "win")
    assert (await rec.wait_for("b", Message)).text == "fine"


async def test_markup_is_relayed_as_plain_text(bridge, web, http):
    rec = bridge.platforms["rec"]
    client = await paired(bridge, http, "m")
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp; "quotes"'
    rec.send("m", Message(evil))
    assert await client.until("gotMessage") == ["gotMessage", evil]
    assert await client.post("/send", msg=evil) == (200, "win")
    assert (await rec.wait_for("m", Message)).text == evil


async def test_bad_start_parameters_are_400(web, http):
    bad = [
        {"topics": "cats"},
        {"topics": '{"a": 1}'},
        {"topics": "[1, 2]"},
        {"topics": json.dumps([f"t{i}" for i in range(21)])},
        {"ask": "   "},
        {"ask": "q" * 501},
        {"ask": "a question here", "wantsspy": "1"},
        {"lang": "english"},
        {"lang": "e1"},
    ]
    for params in bad:
        async with http.get(web.url + "/start", params={"firstevents": "1", **params}) as response:
            assert response.status == 400, params
            assert (await response.text()).startswith("fail")
    assert len(web.clients) == 0
    # tolerated parameters of real clients, and the old bare-id answer without firstevents
    query = {"caps": "recaptcha2,t", "rcs": "1", "spid": "", "m": "0", "group": "unmon", "cc": "x", "randid": "ABCDEFGH",
             "nocache": "0.1", "unknown": "1"}
    async with http.get(web.url + "/start", params=query) as response:
        assert response.status == 200
        assert isinstance(json.loads(await response.text()), str)
    async with http.post(web.url + "/start", data={"firstevents": "1", "lang": "de"}) as response:
        assert response.status == 200
        assert "clientID" in json.loads(await response.text())


def source(address: str) -> aiohttp.ClientSession:
    """A client session whose connections come from `address` (any 127.x address is loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15))


async def test_poll_flood_from_one_address_is_capped_and_others_are_served():
    cfg = web_config(max_polls_per_address=3, max_sessions_per_address=5, poll_window=5.0)
    async with running(cfg) as bridge, source("127.0.0.1") as flood, source("127.0.0.2") as healthy_http:
        web = bridge.platforms["web"]
        attackers = []
        for _ in range(5):
            client = RawClient(flood, web.url)
            await client.start(ask="who am I waiting for?")  # askers wait and never pair with each other
            attackers.append(client)
        refused = await RawClient(flood, web.url).http.get(web.url + "/start", params={"firstevents": "1"})
        assert refused.status == 429  # sixth session from the address
        refused.release()
        # open 3 long polls (the cap); every further poll from the address is refused at once
        polls = [asyncio.create_task(c.post("/events")) for c in attackers[:3]]
        async with asyncio.timeout(5):
            while web.clients.polls.get("127.0.0.1", 0) < 3:
                await asyncio.sleep(0.01)
        extra = await asyncio.gather(*(attackers[i % 2 + 3].post("/events") for i in range(50)))
        assert all(status == 429 for status, _ in extra)
        # a healthy pair from another address is fully served meanwhile
        a, b = RawClient(healthy_http, web.url), RawClient(healthy_http, web.url)
        await a.start()
        await b.start()
        await a.until("connected")
        await b.until("connected")
        assert await a.post("/send", msg="through the flood") == (200, "win")
        assert await b.until("gotMessage") == ["gotMessage", "through the flood"]
        for task in polls:
            task.cancel()


async def test_trusted_proxy_header_decides_the_address(http):
    cfg = web_config(trusted_proxy_header="X-Forwarded-For", max_sessions_per_address=1)
    async with running(cfg) as bridge:
        url = bridge.platforms["web"].url
        for forwarded, expected in (("203.0.113.7", 200), ("203.0.113.7", 429), ("10.0.0.1, 198.51.100.2", 200),
                                    ("203.0.113.7, 198.51.100.2", 429)):
            async with http.get(url + "/start", params={"ask": "a question"}, headers={"X-Forwarded-For": forwarded}) as r:
                assert r.status == expected, forwarded


async def test_origins_headers_and_status_endpoints(bridge, web, http):
    async with http.get(web.url + "/") as response:
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        page = await response.text()
        assert "<script>" not in page and 'src="/static/app.js"' in page  # no inline script
    for name in ("app.js", "lines.js"):  # both scripts write text as text, never as markup
        async with http.get(web.url + "/static/" + name) as response:
            script = await response.text()
            assert response.status == 200 and "textContent" in script
            assert not any(sink in script for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"))
    # a foreign page may not drive the API; same origin may
    async with http.post(web.url + "/start", headers={"Origin": "http://evil.example"}) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    async with http.post(web.url + "/start", headers={"Origin": web.url}) as response:
        assert response.status == 200
    rec = bridge.platforms["rec"]
    rec.send("s", Start(mode=Mode.ASK, question="anyone?"))
    await rec.wait_for("s", Waiting)
    async with http.get(web.url + "/status") as response:
        status = json.loads(await response.text())
        assert status["count"] == 2 and {"servers", "spyQueueTime", "spyeeQueueTime", "timestamp"} <= set(status)
    async with http.get(web.url + "/count") as response:
        assert await response.text() == "2"
    async with http.get(web.url + "/healthz") as response:
        assert response.status == 200
    async with http.get(web.url + "/metrics") as response:
        text = await response.text()
        assert 'stranger_bridge_sessions{platform="web",state="searching"} 1' in text
        assert "stranger_bridge_web_clients" in text and "stranger_bridge_pairing_wait_seconds_count" in text
    async with http.get(web.url + "/events") as response:
        assert response.status == 405


async def test_cors_allows_only_configured_origins(http):
    async with running(web_config(cors_origins=["https://app.example"])) as bridge:
        url = bridge.platforms["web"].url
        async with http.options(url + "/events", headers={"Origin": "https://app.example",
                                                          "Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(url + "/start", headers={"Origin": "https://app.example"}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(url + "/start", headers={"Origin": "https://other.example"}) as r:
            assert r.status == 403


async def test_a_second_poll_of_one_client_supersedes_the_first(bridge, web, http):
    client = RawClient(http, web.url)
    await client.start(ask="is anyone there?")
    first = asyncio.create_task(client.post("/events"))
    async with asyncio.timeout(5):
        while web.clients.polls.get("127.0.0.1", 0) < 1:
            await asyncio.sleep(0.01)
    second = asyncio.create_task(client.post("/events"))
    assert await first == (200, "null")
    await asyncio.wait_for(second, 10)
    assert second.result() == (200, "null")  # after the poll window
