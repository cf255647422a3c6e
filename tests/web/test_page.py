"""The chat page in headless Chromium (Debian's, driven by Playwright): two browsers chat."""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.async_api import async_playwright, expect

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVIL = 'hi <img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & bye'


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed (apt-get install chromium): the page test cannot run"
    return path


async def test_two_browsers_chat_through_the_page(web):
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            desk = await browser.new_context(viewport={"width": 1000, "height": 700})
            phone = await browser.new_context(viewport={"width": 375, "height": 700}, is_mobile=True, has_touch=True)
            a, b = await desk.new_page(), await phone.new_page()
            for page in (a, b):
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                await page.goto(web.url + "/")
            await a.fill("#interests", "cats, jazz")
            await a.press("#interests", "Enter")  # Enter in the set-up form starts
            await b.fill("#interests", "jazz")
            await b.click("#stop")
            await expect(a.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)
            await expect(b.locator("#log")).to_contain_text("You both like jazz.", timeout=10_000)
            await expect(a.locator("#message")).to_be_focused()

            await b.locator("#message").press_sequentially("typ")
            await expect(a.locator("#typing")).to_have_text("Stranger is typing...", timeout=10_000)
            await b.fill("#message", EVIL)
            await b.press("#message", "Enter")
            said = a.locator(".line.stranger .text").last
            await expect(said).to_have_text(EVIL, timeout=10_000)
            await expect(a.locator("#typing")).to_have_text("")
            assert await a.locator("#log img, #log script").count() == 0  # shown as text, not markup
            assert await a.evaluate("window.pwned") is None

            await a.fill("#message", "hello from the desk ✓")
            await a.click("#send")
            await expect(b.locator(".line.stranger .text").last).to_have_text("hello from the desk ✓", timeout=10_000)
            await expect(b.locator(".line.you .text").last).to_have_text(EVIL)
            online = await a.locator("#count").text_content()
            assert online and online.isdigit()

            await a.screenshot(path=str(ARTIFACTS / "web_chat_desktop.png"))
            await b.screenshot(path=str(ARTIFACTS / "web_chat_phone.png"))

            await a.keyboard.press("Escape")  # Esc stops
            await expect(a.locator("#log")).to_contain_text("You have disconnected.")
            await expect(b.locator("#log")).to_contain_text("Stranger has disconnected.", timeout=10_000)
            await expect(b.locator("#stop")).to_have_text("Start")
            await expect(b.locator("#message")).to_be_disabled()

            # Esc again starts anew; the phone presses Next-equivalent Start: they meet again
            await a.keyboard.press("Escape")
            await b.click("#stop")
            await expect(a.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)
            await a.click("#next")  # next: leave and look again at once
            await expect(b.locator("#log")).to_contain_text("Stranger has disconnected.", timeout=10_000)
            await expect(a.locator("#log")).to_contain_text("Looking for someone", timeout=10_000)
        finally:
            await browser.close()
    assert not problems, problems


async def test_spy_mode_in_the_page(web):
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            pages = [await (await browser.new_context()).new_page() for _ in range(3)]
            spy, s1, s2 = pages
            for page in pages:
                await page.goto(web.url + "/")
            await spy.fill("#question", "Is <b>this</b> a question?")
            await spy.click("#stop")
            for page in (s1, s2):
                await page.check("#answer")
                await page.click("#stop")
            for page in (s1, s2):
                await expect(page.locator("#log")).to_contain_text("Question to discuss: Is <b>this</b> a question?",
                                                                   timeout=10_000)
            await expect(spy.locator("#log")).to_contain_text("watching two strangers", timeout=10_000)
            await expect(spy.locator("#message")).to_be_disabled()
            await s1.fill("#message", "yes it is")
            await s1.press("#message", "Enter")
            await expect(s2.locator(".line.stranger .text").last).to_have_text("yes it is", timeout=10_000)
            line = spy.locator(".line.stranger").last
            await expect(line).to_contain_text("yes it is", timeout=10_000)
            assert (await line.locator(".who").text_content()).startswith("Stranger ")
            await spy.screenshot(path=str(ARTIFACTS / "web_spy.png"))
        finally:
            await browser.close()
