"""Cross-site abuse: DNS rebinding, other sites' <img> and form requests; Omegle clients unaffected."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web as aioweb
from playwright.async_api import async_playwright, expect

from tests.helpers import running

from .conftest import web_config
from .test_page import FLAGS, chromium

IMG = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


async def status(http, method: str, url: str, **kwargs) -> int:
    async with http.request(method, url, **kwargs) as response:
        return response.status


async def test_dns_rebinding_pages_are_refused(web, http):
    evil = f"evil.example:{web.port}"
    rebinding = {"Host": evil, "Origin": f"http://{evil}"}
    assert await status(http, "POST", web.url + "/start", headers=rebinding) == 403
    # a rebinding page's own GET is same-origin to it and carries no Origin: its Host gives it away
    same = {"Host": evil, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    assert await status(http, "GET", web.url + "/start", params={"firstevents": "1"}, headers=same) == 403
    assert len(web.clients) == 0
    assert web.counted("refused", "host") == 2
    # our own page, under each loopback name, is served
    for name in ("127.0.0.1", "localhost"):
        own = f"http://{name}:{web.port}"
        headers = {"Host": f"{name}:{web.port}", "Origin": own, "Sec-Fetch-Site": "same-origin"}
        assert await status(http, "POST", web.url + "/start", headers=headers) == 200
    # an Omegle-protocol client (no Origin, no Sec-Fetch-*) works whatever Host it names
    async with http.get(web.url + "/start", params={"firstevents": "1"}, headers={"Host": evil}) as response:
        assert response.status == 200 and "clientID" in json.loads(await response.text())


async def test_cross_site_images_do_not_lock_the_address_out(web, http):
    for _ in range(32):
        assert await status(http, "GET", web.url + "/start", params={"firstevents": "1"}, headers=IMG) == 403
    assert len(web.clients) == 0 and not web.clients.sessions
    form = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Origin": "null"}
    assert await status(http, "POST", web.url + "/nojs/start", headers=form) == 403  # another site's form
    # a link from another site to the page itself is fine
    link = {k: v for k, v in form.items() if k != "Origin"}  # a GET navigation carries no Origin
    assert await status(http, "GET", web.url + "/", headers=link) == 200
    same = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    for _ in range(web.config.max_sessions_per_address):
        assert await status(http, "GET", web.url + "/start", params={"ask": "mine?"}, headers=same) == 200


async def test_public_origin_is_the_only_own_origin(http):
    async with running(web_config(public_origin="https://chat.example")) as bridge:
        web = bridge.platforms["web"]
        mine = {"Host": "chat.example", "Origin": "https://chat.example", "Sec-Fetch-Site": "same-origin"}
        assert await status(http, "POST", web.url + "/start", headers=mine) == 200
        loopback = {"Origin": web.url, "Sec-Fetch-Site": "same-origin"}
        assert await status(http, "POST", web.url + "/start", headers=loopback) == 403
        proxied = {"Host": f"127.0.0.1:{web.port}", "Origin": "https://chat.example", "Sec-Fetch-Site": "same-origin"}
        assert await status(http, "POST", web.url + "/start", headers=proxied) == 200  # a proxy that rewrites Host


async def test_another_sites_images_in_chromium_leave_the_page_working(web):
    evil = aioweb.Application()
    tags = "".join(f'<img src="{web.url}/start?firstevents=1&amp;n={i}">' for i in range(32))

    async def page(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text=f"<!doctype html><title>elsewhere</title>{tags}", content_type="text/html")

    evil.router.add_get("/", page)
    runner = aioweb.AppRunner(evil, access_log=None)
    await runner.setup()
    site = aioweb.TCPSite(runner, "127.0.0.2", 0)  # another host: cross-site to 127.0.0.1
    await site.start()
    try:
        elsewhere = f"http://127.0.0.2:{runner.addresses[0][1]}/"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
            try:
                tab = await (await browser.new_context()).new_page()
                await tab.goto(elsewhere)
                async with asyncio.timeout(10):
                    while web.counted("refused", "cross_site") < 32:
                        await asyncio.sleep(0.05)
                assert len(web.clients) == 0
                own = await (await browser.new_context()).new_page()
                await own.goto(web.url + "/")
                await own.fill("#question", "still mine?")
                await own.click("#stop")
                await expect(own.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
                assert len(web.clients) == 1
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
