"""Cut long polls: what the server guarantees to any Omegle client, and the acknowledged polls of our own page."""

from __future__ import annotations

import asyncio
import json
import re
import secrets

import aiohttp
from playwright.async_api import async_playwright, expect

import pytest

from bridge.events import Connected, Disconnected, Message, Start
from tests.helpers import running

from .client import RawClient
from .conftest import web_config
from .test_nojs import Stream
from .test_page import FLAGS, chromium
from .test_security import paired


FAST = {"stranger_rate": 1e6, "stranger_burst": 100_000, "user_rate": 1e6, "user_burst": 100_000}


@pytest.fixture
async def bridge():
    """The web fixture's bridge, without the core's flood limits (these tests send fast on purpose)."""
    async with running(web_config(), **FAST) as instance:
        yield instance


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_poll_closed_before_its_answer_loses_nothing(bridge, web, http):
    rec = bridge.platforms["rec"]
    client = await paired(bridge, http, "cut")
    for round_ in range(5):
        connections = web.gate.count
        doomed = aiohttp.ClientSession()
        poll = asyncio.create_task(doomed.post(f"{web.url}/events", data={"id": client.id}))
        await until(lambda: web.clients.polls.get("127.0.0.1", 0) == 1)
        poll.cancel()
        await doomed.close()
        await until(lambda: web.gate.count == connections)  # the server saw the connection close
        token = f"after-cut-{round_}-{secrets.token_hex(4)}"
        rec.send("cut", Message(token))
        assert await client.until("gotMessage") == ["gotMessage", token]  # the next poll has it
    assert client.names().count("gotMessage") == 5


async def test_two_pollers_on_one_id_never_get_an_event_twice(bridge, web, http):
    rec = bridge.platforms["rec"]
    first = await paired(bridge, http, "two")
    async with aiohttp.ClientSession() as other_http:
        second = RawClient(other_http, web.url)
        second.id = first.id
        got: list[list[str]] = [[], []]

        async def loop(client: RawClient, mine: list[str]) -> None:
            while True:
                status, body = await client.post("/events")
                if status == 400:
                    mine.append(f"400:{body}")
                    return  # the id is dead: the other poller took the end
                for event in json.loads(body) or []:
                    if event[0] == "gotMessage":
                        mine.append(event[1])
                    if event[0] == "strangerDisconnected":
                        mine.append("END")
                        return

        pollers = [asyncio.create_task(loop(c, g)) for c, g in ((first, got[0]), (second, got[1]))]
        sent = [f"t{i}-{secrets.token_hex(3)}" for i in range(200)]
        for i, token in enumerate(sent):
            rec.send("two", Message(token))
            if i % 10 == 0:
                await asyncio.sleep(0)  # let the pollers take turns mid-stream
        rec.send("two", Disconnected())
        await asyncio.wait_for(asyncio.gather(*pollers), 30)
    everything = [t for t in got[0] + got[1] if not t.startswith("400:")]
    assert everything.count("END") == 1
    received = [t for t in everything if t != "END"]
    assert sorted(received) == sorted(sent) and len(set(received)) == len(sent)  # each exactly once
    for mine in got:  # and each poller saw its share in order
        tokens = [t for t in mine if t != "END" and not t.startswith("400:")]
        assert tokens == sorted(tokens, key=sent.index)


async def test_acknowledged_polls_answer_again_what_was_not_acknowledged(bridge, web, http):
    rec = bridge.platforms["rec"]
    rec.send("ack", Start())
    client = RawClient(http, web.url)
    data = await client.start(ack="0")
    await rec.wait_for("ack", Connected)
    seen = data["next"]
    shown = data["events"][:seen]
    while not any(e[0] == "connected" for e in shown):
        status, body = await client.post("/events", ack=str(seen))
        answer = json.loads(body)
        if answer is None:
            continue
        assert answer["seq"] == seen
        shown += answer["events"]
        seen += len(answer["events"])
    rec.send("ack", Message("once"))
    status, body = await client.post("/events", ack=str(seen))
    lost = json.loads(body)  # pretend this answer never arrived: poll again with the same ack
    assert lost == {"seq": seen, "events": [["gotMessage", "once"]]}
    status, body = await client.post("/events", ack=str(seen))
    assert json.loads(body) == lost
    rec.send("ack", Message("twice"))
    status, body = await client.post("/events", ack=str(seen + 1))
    assert json.loads(body) == {"seq": seen + 1, "events": [["gotMessage", "twice"]]}
    rec.send("ack", Disconnected())
    await until(lambda: len(web.clients) == 0)  # the end retires the client; its events wait
    status, body = await client.post("/events", ack=str(seen + 1))
    assert json.loads(body) == {"seq": seen + 1, "events": [["gotMessage", "twice"], ["strangerDisconnected"]]}
    status, body = await client.post("/events", ack=str(seen + 2))  # the lost end again
    assert json.loads(body) == {"seq": seen + 2, "events": [["strangerDisconnected"]]}
    for bad in ("-1", "x", str(seen + 99), "1" * 20):
        assert (await client.post("/events", ack=bad))[0] == 400


async def test_the_page_loses_no_line_and_shows_none_twice_when_polls_are_cut(bridge, web):
    rec = bridge.platforms["rec"]
    rec.send("page", Start())
    cut = {"n": 0}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            page = await (await browser.new_context()).new_page()

            async def every_other_answer_is_lost(route):
                response = await route.fetch()  # the server answered and moved on...
                if "gotMessage" in await response.text() and cut["n"] % 2 == 0:
                    cut["n"] += 1
                    await route.abort("connectionreset")  # ...and the page never saw it
                    return
                cut["n"] += "gotMessage" in await response.text()
                await route.fulfill(response=response)

            await page.route("**/events", every_other_answer_is_lost)
            await page.goto(web.url + "/")
            await page.click("#stop")
            await rec.wait_for("page", Connected)
            await expect(page.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)
            sent = []
            for round_ in range(6):
                tokens = [f"r{round_}-{i}-{secrets.token_hex(3)}" for i in range(3)]
                for token in tokens:
                    rec.send("page", Message(token))
                sent += tokens
                await expect(page.locator(".line.stranger .text")).to_have_text(sent, timeout=15_000)
            rec.send("page", Disconnected())
            await expect(page.locator(".line.notice").last).to_have_text("Stranger has disconnected.", timeout=15_000)
            await expect(page.locator(".line.stranger .text")).to_have_text(sent)
            assert cut["n"] >= 6  # answers were really lost on the way
        finally:
            await browser.close()


async def test_a_reload_takes_the_chat_up_again_and_closing_the_tab_leaves(bridge, web):
    rec = bridge.platforms["rec"]
    rec.send("reload", Start())
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(web.url + "/")
            await page.click("#stop")
            await rec.wait_for("reload", Connected)
            await expect(page.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)
            sent = [f"before-{i}-{secrets.token_hex(3)}" for i in range(3)]
            for token in sent:
                rec.send("reload", Message(token))
            await expect(page.locator(".line.stranger .text")).to_have_text(sent, timeout=10_000)
            await page.fill("#message", "mine before")
            await page.press("#message", "Enter")
            await rec.wait_for("reload", lambda e: isinstance(e, Message) and e.text == "mine before")
            during = [f"during-{i}-{secrets.token_hex(3)}" for i in range(3)]
            for token in during:  # on their way while the page reloads
                rec.send("reload", Message(token))
            await page.reload()
            sent += during
            await expect(page.locator(".line.stranger .text")).to_have_text(sent, timeout=10_000)
            await expect(page.locator(".line.you .text")).to_have_text(["mine before"])
            await expect(page.locator("#message")).to_be_enabled()
            after = f"after-{secrets.token_hex(3)}"
            rec.send("reload", Message(after))
            sent.append(after)
            await expect(page.locator(".line.stranger .text")).to_have_text(sent, timeout=10_000)
            await page.fill("#message", "back again")
            await page.press("#message", "Enter")
            marker = await rec.wait_for("reload", lambda e: isinstance(e, Message) and e.text == "back again")
            shown = rec.events("reload")
            assert not [e for e in shown[: shown.index(marker)] if isinstance(e, Disconnected)]  # it never left
            assert len(web.clients) == 1 and web.clients.sessions["127.0.0.1"] == 1
            await page.close(run_before_unload=True)  # closing the tab leaves, after the grace period
            ended = await rec.wait_for("reload", Disconnected, timeout=15)
            assert ended.reason == "stranger"
            assert len(web.clients) == 0
        finally:
            await browser.close()


def stranger_lines(page_html: str) -> list[str]:
    return re.findall(r'<b class="who">Stranger:</b> <bdi class="text">([^<]*)</bdi>', page_html)


async def test_a_cut_nojs_stream_is_taken_up_again_with_every_line_once(bridge, web, http):
    rec = bridge.platforms["rec"]
    web.nojs_grace = 10.0  # long enough to come back in
    rec.send("njs", Start())
    first = await Stream(http, web.url).start()
    await rec.wait_for("njs", Connected)
    await first.until("now chatting")
    before = [f"b{i}-{secrets.token_hex(3)}" for i in range(3)]
    for token in before:
        rec.send("njs", Message(token))
    await first.until(before[-1])
    connections = web.gate.count
    first.close()  # the network cuts the stream
    await until(lambda: web.gate.count < connections)
    during = [f"d{i}-{secrets.token_hex(3)}" for i in range(3)]
    for token in during:
        rec.send("njs", Message(token))
    async with http.get(web.url + "/nojs/chat") as again:  # a reload: the cookie names the chat
        assert again.status == 200
        text = ""
        async with asyncio.timeout(10):
            while during[-1] not in text:
                text += (await again.content.readany()).decode()
        assert stranger_lines(text) == before + during  # every line, once, in order
        stream = Stream(http, web.url)
        stream.id = first.id
        assert (await stream.post(msg="still here"))[0] == 200
        marker = await rec.wait_for("njs", lambda e: isinstance(e, Message) and e.text == "still here")
        shown = rec.events("njs")
        assert not [e for e in shown[: shown.index(marker)] if isinstance(e, Disconnected)]
        after = f"a-{secrets.token_hex(3)}"
        rec.send("njs", Message(after))
        async with asyncio.timeout(10):
            while after not in text:
                text += (await again.content.readany()).decode()
        assert stranger_lines(text) == before + during + [after]
    web.nojs_grace = 0.2
    assert (await rec.wait_for("njs", Disconnected, timeout=15)).reason == "stranger"  # then it left
    async with http.get(web.url + "/nojs/chat") as late:
        assert late.status == 400 and "This chat has ended." in await late.text()


async def test_a_reloaded_nojs_page_shows_every_line_once(bridge, web):
    rec = bridge.platforms["rec"]
    web.nojs_grace = 10.0
    rec.send("njr", Start())
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            plain = await (await browser.new_context(java_script_enabled=False)).new_page()
            await plain.goto(web.url + "/")
            await plain.click("#nojs-go")
            await rec.wait_for("njr", Connected)
            await expect(plain.locator(".nojs-log")).to_contain_text("now chatting", timeout=10_000)
            sent = [f"before-{i}-{secrets.token_hex(3)}" for i in range(3)]
            for token in sent:
                rec.send("njr", Message(token))
            await expect(plain.locator(".nojs-log .stranger .text")).to_have_text(sent, timeout=10_000)
            during = [f"during-{i}-{secrets.token_hex(3)}" for i in range(3)]
            for token in during:
                rec.send("njr", Message(token))
            await plain.reload(wait_until="commit")
            sent += during
            await expect(plain.locator(".nojs-log .stranger .text")).to_have_text(sent, timeout=10_000)
            frame = plain.frame_locator("iframe.nojs-frame")
            await frame.locator("#msg").fill("after the reload")
            await frame.locator("#msg").press("Enter")
            marker = await rec.wait_for("njr", lambda e: isinstance(e, Message) and e.text == "after the reload")
            shown = rec.events("njr")
            assert not [e for e in shown[: shown.index(marker)] if isinstance(e, Disconnected)]
            await expect(plain.locator(".nojs-log .you .text")).to_have_text(["after the reload"], timeout=10_000)
            assert len(web.clients) == 1
        finally:
            await browser.close()
