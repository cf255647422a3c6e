"""The no-JavaScript chat in headless Chromium with JavaScript disabled, meeting a JS page user."""

from __future__ import annotations

from playwright.async_api import async_playwright, expect

from .test_page import ARTIFACTS, EVIL, FLAGS, chromium


async def test_a_browser_without_javascript_chats_with_a_javascript_user(web):
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            plain = await (await browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 700},
                                                     is_mobile=True, has_touch=True)).new_page()
            js = await (await browser.new_context()).new_page()
            await plain.goto(web.url + "/")
            await expect(plain.locator("#setup")).to_be_hidden()  # the script-driven form is useless here
            await plain.fill("#nojs-interests", "jazz, tea")
            await plain.screenshot(path=str(ARTIFACTS / "web_nojs_start.png"))
            await plain.press("#nojs-interests", "Enter")  # keyboard: Enter starts
            await expect(plain.locator(".nojs-log")).to_contain_text("Looking for someone", timeout=10_000)
            assert plain.url.endswith("/nojs/chat")  # settings went in the body, the id in a cookie: none in the URL

            await js.goto(web.url + "/")
            await js.fill("#interests", "tea")
            await js.click("#stop")
            await expect(plain.locator(".nojs-log")).to_contain_text("You both like “tea”.", timeout=10_000)
            await expect(js.locator("#log")).to_contain_text("You're now chatting", timeout=10_000)

            frame = plain.frame_locator("iframe.nojs-frame")
            await expect(frame.locator("#msg")).to_be_focused()  # autofocus: type at once
            await plain.keyboard.type("hello from a browser without JavaScript")
            await plain.keyboard.press("Enter")
            await expect(js.locator(".line.stranger .text").last).to_have_text(
                "hello from a browser without JavaScript", timeout=10_000)
            await expect(plain.locator(".nojs-log .you .text").last).to_have_text(
                "hello from a browser without JavaScript", timeout=10_000)
            # browsers autofocus once per page: in the re-rendered form one Tab reaches the empty box
            await expect(frame.locator("#msg")).to_have_value("")
            await plain.keyboard.press("Tab")
            await expect(frame.locator("#msg")).to_be_focused()
            await plain.keyboard.type("second line")
            await plain.keyboard.press("Enter")
            await expect(js.locator(".line.stranger .text").last).to_have_text("second line", timeout=10_000)

            await js.fill("#message", EVIL)
            await js.press("#message", "Enter")
            said = plain.locator(".nojs-log .stranger .text").last
            await expect(said).to_have_text(EVIL, timeout=10_000)
            assert await plain.locator(".nojs-log img, .nojs-log script").count() == 0
            await plain.screenshot(path=str(ARTIFACTS / "web_nojs_phone.png"))

            await frame.locator("button[value=stop]").click()
            await expect(plain.locator(".nojs-log")).to_contain_text("You have disconnected.", timeout=10_000)
            await expect(js.locator("#log")).to_contain_text("Stranger has disconnected.", timeout=10_000)
            await expect(frame.locator("text=This chat has ended.")).to_be_visible()

            # New chat (same settings) from the frame: the top page becomes a new stream
            await frame.locator("button", has_text="New chat").click()
            await expect(plain.locator(".nojs-log")).to_contain_text("Looking for someone", timeout=10_000)
            await js.click("#stop")  # the JS user starts again: they meet
            await expect(plain.locator(".nojs-log")).to_contain_text("You both like", timeout=10_000)
            await plain.frame_locator("iframe.nojs-frame").locator("button[value=next]").click()
            await expect(js.locator("#log")).to_contain_text("Stranger has disconnected.", timeout=10_000)
            await expect(plain.locator(".nojs-log")).to_contain_text("Looking for someone", timeout=10_000)
            await plain.screenshot(path=str(ARTIFACTS / "web_nojs_next.png"))
        finally:
            await browser.close()
