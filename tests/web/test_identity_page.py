"""Web identities in headless Chromium: the key cookie across a reload, reports from both pages, bans on both pages."""

from __future__ import annotations

import re

import aiohttp
from playwright.async_api import async_playwright, expect

from plugins.web.identity import COOKIE

from .client import RawClient
from .test_page import FLAGS, chromium


def users(bridge) -> dict[str, str]:
    """Start.user of every live web session, by room id."""
    return {room.id: s.start.user for room, s in bridge.router.sessions.items()
            if room.platform == "web" and s.start is not None}


async def key_cookie(context) -> str:
    values = [c["value"] for c in await context.cookies() if c["name"] == COOKIE]
    assert len(values) == 1, values
    return values[0]


async def test_the_key_cookie_survives_a_reload_and_is_the_start_user(bridge, web):
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(web.url + "/")
            cookie = next(c for c in await context.cookies() if c["name"] == COOKIE)
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
            await page.reload()
            assert await key_cookie(context) == cookie["value"]  # the same key after a reload
            await page.click("#stop")
            await expect(page.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
            first = set(users(bridge).values())
            assert first == {web.identities.cookie_key(cookie["value"])}
            assert cookie["value"] not in str(first)
            await page.reload()  # the chat is taken up again; a new one carries the same key
            await page.keyboard.press("Escape")
            await expect(page.locator("#log")).to_contain_text("You have disconnected.", timeout=10_000)
            await page.keyboard.press("Escape")
            await expect(page.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
            assert set(users(bridge).values()) == first
        finally:
            await browser.close()


async def meet_two(web, http, a_text: str, b_text: str) -> tuple[RawClient, RawClient]:
    """Two raw Omegle clients started one after the other, each saying who it is once connected."""
    out = []
    for text in (a_text, b_text):
        client = RawClient(http, web.url)
        await client.start()
        out.append((client, text))
    for client, text in out:
        await client.until("connected")
        assert await client.post("/send", msg=text) == (200, "win")
    return out[0][0], out[1][0]


async def test_a_report_from_either_page_keeps_that_pair_apart(bridge, web):
    jar = aiohttp.CookieJar(unsafe=True)
    async with async_playwright() as pw, aiohttp.ClientSession(cookie_jar=jar) as http:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            for round_, nojs_reports in enumerate((False, True)):
                js = await (await browser.new_context()).new_page()
                plain = await (await browser.new_context(java_script_enabled=False)).new_page()
                await js.goto(web.url + "/")
                await js.click("#stop")
                await expect(js.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
                await plain.goto(web.url + "/")
                await plain.click("#nojs-go")
                await expect(js.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)
                frame = plain.frame_locator("iframe.nojs-frame")
                await frame.locator("#msg").fill(f"plain-{round_}")
                await frame.locator("#msg").press("Enter")
                await expect(js.locator(".line.stranger .text").last).to_have_text(f"plain-{round_}", timeout=10_000)
                if nojs_reports:
                    await frame.locator("button[value=report]").click()
                    reporter, other = plain.locator(".nojs-log"), js.locator("#log")
                else:
                    await js.click("#report")
                    reporter, other = js.locator("#log"), plain.locator(".nojs-log")
                await expect(reporter).to_contain_text(
                    "You reported Stranger. You will not be paired with them again for 30 days.", timeout=10_000)
                await expect(other).to_contain_text("Stranger has disconnected.", timeout=10_000)

                # both look again, one after the other: the hub does not pair them with each other ...
                await js.click("#stop")
                await expect(js.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
                await plain.goto(web.url + "/")
                await plain.click("#nojs-go")
                await expect(plain.locator(".nojs-log")).to_contain_text("Looking for someone", timeout=10_000)
                # ... but each meets one of two newcomers, and who talks to whom shows in the tokens
                c, d = await meet_two(web, http, f"c-{round_}", f"d-{round_}")
                shown = js.locator(".line.stranger .text").last
                await expect(shown).to_have_text(f"c-{round_}", timeout=10_000)
                await expect(plain.locator(".nojs-log .stranger .text").last).to_have_text(f"d-{round_}",
                                                                                           timeout=10_000)
                for client in (c, d):
                    await client.post("/disconnect")
                await js.context.close()
                await plain.context.close()
        finally:
            await browser.close()


async def test_a_banned_browser_is_told_the_time_left_on_both_pages(bridge, web):
    sanctions = bridge.router.moderator.sanctions
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            js_context = await browser.new_context()
            js = await js_context.new_page()
            await js.goto(web.url + "/")
            await sanctions.ban(web.identities.cookie_key(await key_cookie(js_context)), 3600.0, "spam")
            await js.click("#stop")
            await expect(js.locator("#log")).to_contain_text(
                re.compile(r"You are banned from starting chats on this bridge for (1 h|59 min \d+ s) more\. "
                           r"Reason: spam\."), timeout=10_000)
            await expect(js.locator("#stop")).to_have_text("Start")  # not left searching
            assert not users(bridge)

            plain_context = await browser.new_context(java_script_enabled=False)
            plain = await plain_context.new_page()
            await plain.goto(web.url + "/")
            await sanctions.ban(web.identities.cookie_key(await key_cookie(plain_context)), 7200.0)
            await plain.click("#nojs-go")
            log = plain.locator(".nojs-log")
            await expect(log).to_contain_text(
                re.compile(r"You are banned from starting chats on this bridge for (2 h|1 h \d+ min) more\."),
                timeout=10_000)
            await expect(plain.locator(".nojs-again")).to_be_visible(timeout=10_000)  # the stream ended
            assert not users(bridge)
        finally:
            await browser.close()
