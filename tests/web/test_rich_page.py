"""The rich relay in headless Chromium: two chat pages through the hub, with a nothing-lost oracle
over messages, edits, deletions, reactions and replies read back from each page's DOM."""

from __future__ import annotations

from dataclasses import dataclass, field

from playwright.async_api import Page, async_playwright, expect

from .test_page import ARTIFACTS, EVIL, FLAGS, chromium

WAIT = 10_000


@dataclass
class Said:
    """One line of the intended history: who wrote it and what the chat did to it."""

    author: str  # "a" or "b"
    text: str
    edited: bool = False
    deleted: bool = False
    reply_to: int | None = None  # index of the line it answers
    reactions: dict[str, int] = field(default_factory=dict)


def intended(history: list[Said], me: str) -> list[tuple]:
    """What the page of `me` must show for the intended history."""
    out = []
    for said in history:
        who = "You" if said.author == me else "Stranger"
        quote = None
        if said.reply_to is not None and not said.deleted:
            target = history[said.reply_to]
            tw = "You" if target.author == me else "Stranger"
            quote = "message deleted" if target.deleted else f"{tw}: {target.text}"
        text = "message deleted" if said.deleted else said.text
        reactions = () if said.deleted else tuple(sorted(said.reactions.items()))
        out.append((who, text, said.edited and not said.deleted, said.deleted, quote, reactions))
    return out


async def shown(page: Page) -> list[tuple]:
    """Every message line of the page, as the user sees it."""
    return await page.evaluate("""() => [...document.querySelectorAll('#log .line.you, #log .line.stranger')].map((d) => {
        const q = d.querySelector('.quote');
        const chips = [...d.querySelectorAll('.reactions .chip')].map((c) => {
            const [emoji, n] = c.textContent.split(' ');
            return [emoji, Number(n)];
        }).sort();
        return [d.querySelector('.who').textContent.replace(/: $/, ''), d.querySelector('.text').textContent,
                d.querySelector('.edited') !== null, d.classList.contains('deleted'), q ? q.textContent : null, chips];
    })""")


def normal(rows: list) -> list[tuple]:
    return [(w, t, e, d, q, tuple(tuple(c) for c in r)) for w, t, e, d, q, r in rows]


def line(page: Page, text: str):
    return page.locator("#log .line", has=page.locator(".text", has_text=text))


async def send(page: Page, text: str, other: Page) -> None:
    await page.fill("#message", text)
    await page.press("#message", "Enter")
    await expect(line(other, text)).to_have_count(1, timeout=WAIT)


async def test_two_pages_relay_edits_deletions_reactions_and_replies_with_nothing_lost(web):
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            a = await (await browser.new_context()).new_page()
            b = await (await browser.new_context()).new_page()
            for page in (a, b):
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
                await page.goto(web.url + "/")
                await page.click("#stop")
            for page in (a, b):
                await expect(page.locator("#log")).to_contain_text("You're now chatting", timeout=WAIT)
            history: list[Said] = []

            async def say(who: str, text: str, reply_to: int | None = None) -> None:
                page, other = (a, b) if who == "a" else (b, a)
                if reply_to is not None:
                    await line(page, history[reply_to].text).locator("button.reply").click()
                    await expect(page.locator("#compose")).to_be_visible()
                await send(page, text, other)
                history.append(Said(who, text, reply_to=reply_to))

            await say("a", "tokA1")
            await say("b", "tokB1 " + EVIL)
            await say("a", "tokA2")
            # A edits its first line: B sees the new text, marked
            await line(a, "tokA1").locator("button.edit").click()
            await a.fill("#message", "tokA1-edited")
            await a.press("#message", "Enter")
            history[0].text, history[0].edited = "tokA1-edited", True
            await expect(line(b, "tokA1-edited").locator(".edited")).to_have_count(1, timeout=WAIT)
            # B answers A's second line: both see the quote
            await say("b", "tokB2", reply_to=2)
            await expect(line(a, "tokB2").locator(".quote")).to_have_text("You: tokA2", timeout=WAIT)
            # reactions: A on B's reply, B on its own first line, A adds and takes back one
            await line(a, "tokB2").locator("button.react[data-emoji='👍']").click()
            history[3].reactions["👍"] = 1
            await expect(line(b, "tokB2").locator(".chip")).to_have_text("👍 1", timeout=WAIT)
            await line(b, "tokB1").locator("button.react[data-emoji='❤️']").click()
            await expect(line(a, "tokB1").locator(".chip")).to_have_text("❤️ 1", timeout=WAIT)
            await line(a, "tokB1").locator("button.react[data-emoji='😂']").click()
            await expect(line(b, "tokB1").locator(".chip[data-emoji='😂']")).to_have_text("😂 1", timeout=WAIT)
            await line(a, "tokB1").locator(".chip[data-emoji='😂']").click()  # take it back
            await expect(line(b, "tokB1").locator(".chip[data-emoji='😂']")).to_have_count(0, timeout=WAIT)
            history[1].reactions["❤️"] = 1
            # B deletes its first line, A its second (the one B answered)
            await line(b, "tokB1").locator("button.delete").click()
            history[1].deleted = True
            await line(a, "tokA2").locator("button.delete").click()
            history[2].deleted = True
            await expect(b.locator("#log .line.deleted")).to_have_count(2, timeout=WAIT)
            await expect(a.locator("#log .line.deleted")).to_have_count(2, timeout=WAIT)
            # B edits its reply (Esc first leaves an edit without stopping the chat)
            await line(b, "tokB2").locator("button.edit").click()
            await expect(b.locator("#compose")).to_be_visible()
            await expect(b.locator("#message")).to_have_value("tokB2")
            await b.keyboard.press("Escape")
            await expect(b.locator("#compose")).to_be_hidden()
            await expect(b.locator("#message")).to_have_value("")
            await expect(b.locator("#stop")).to_have_text("Stop")
            await line(b, "tokB2").locator("button.edit").click()
            await b.fill("#message", "tokB2-edited")
            await b.press("#message", "Enter")
            history[3].text, history[3].edited = "tokB2-edited", True
            await expect(line(a, "tokB2-edited").locator(".edited")).to_have_count(1, timeout=WAIT)
            # markers after everything: what each page shows then is final
            await say("a", "tokA3")
            await say("b", "tokB3")

            assert normal(await shown(a)) == intended(history, "a")
            assert normal(await shown(b)) == intended(history, "b")
            for page in (a, b):  # deleted text is gone from the page (and its stored transcript)
                assert "tokB1" not in await page.locator("#log").inner_text()
                assert "tokA2" not in await page.evaluate("sessionStorage.getItem('stranger-bridge-chat')")
                assert await page.locator("#log img, #log script").count() == 0
                assert await page.evaluate("window.pwned") is None
            await a.screenshot(path=str(ARTIFACTS / "web_rich.png"))

            # a reload keeps the rich lines as they are
            await b.reload()
            await expect(b.locator("#log .line.deleted")).to_have_count(2, timeout=WAIT)
            assert normal(await shown(b)) == intended(history, "b")
        finally:
            await browser.close()
    assert not problems, problems


async def test_a_received_picture_is_blurred_until_clicked_with_report_beside_it(http):
    from bridge.events import Connected, Message, Room, Start
    from tests.helpers import running

    from .conftest import web_config
    from .test_rich import png

    async with running(web_config(images=True)) as bridge:
        web, rec = bridge.platforms["web"], bridge.platforms["rec"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
            try:
                page = await browser.new_page()
                await page.goto(web.url + "/")
                rec.send("pic", Start())
                await page.click("#stop")
                await rec.wait_for("pic", Connected)
                await expect(page.locator("#log")).to_contain_text("You're now chatting", timeout=WAIT)
                room = Room("web", next(iter(web.clients.by_key)))
                picture = png(40, 30)
                await web.deliver(room, Message("see <b>this</b>", ref="c1", image=picture))
                img = page.locator("#log .line.stranger .picture img")
                await expect(img).to_have_class("blurred", timeout=WAIT)
                src = await img.get_attribute("src")
                assert src.startswith("/image/")  # served from here, same origin
                assert await img.evaluate("(i) => i.complete && i.naturalWidth") == 40  # the CSP lets it load
                await expect(page.locator("#log .line.stranger .picture button.picture-report")).to_be_visible()
                await img.click()
                await expect(img).not_to_have_class("blurred")
                await img.click()
                await expect(img).to_have_class("blurred")
                await page.screenshot(path=str(ARTIFACTS / "web_picture.png"))
                # the report button beside it reports the stranger (the core ends the chat as a report)
                await page.locator("#log .picture-report").click()
                await expect(page.locator("#log")).to_contain_text("You reported", timeout=WAIT)
            finally:
                await browser.close()


async def test_a_browser_without_javascript_follows_edits_deletions_and_reactions(web):
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            plain = await (await browser.new_context(java_script_enabled=False)).new_page()
            js = await (await browser.new_context()).new_page()
            await plain.goto(web.url + "/")
            await plain.click("#nojs-go")
            await expect(plain.locator(".nojs-log")).to_contain_text("Looking for someone", timeout=WAIT)
            await js.goto(web.url + "/")
            await js.click("#stop")
            await expect(plain.locator(".nojs-log")).to_contain_text("now chatting", timeout=WAIT)
            await js.fill("#message", "tokJ1")
            await js.press("#message", "Enter")
            log = plain.locator(".nojs-log")
            await expect(log.locator(".stranger .text")).to_have_text("tokJ1", timeout=WAIT)
            frame = plain.frame_locator("iframe.nojs-frame")
            await frame.locator("#msg").fill("tokN1")
            await frame.locator("#msg").press("Enter")
            await expect(line(js, "tokN1")).to_have_count(1, timeout=WAIT)
            # the JS user edits: the no-JS page reloads itself (meta refresh) and shows the new text
            await line(js, "tokJ1").locator("button.edit").click()
            await js.fill("#message", "tokJ1-fixed")
            await js.press("#message", "Enter")
            await expect(log.locator(".stranger .text")).to_have_text("tokJ1-fixed", timeout=WAIT)
            await expect(log.locator(".stranger .edited")).to_have_text("(edited)")
            # the no-JS user edits its last message, reacts to the stranger's, then deletes its own
            frame = plain.frame_locator("iframe.nojs-frame")
            await frame.locator("#msg").fill("tokN1-fixed")
            await frame.locator("button[value=edit]").click()
            await expect(line(js, "tokN1-fixed").locator(".edited")).to_have_count(1, timeout=WAIT)
            await expect(log.locator(".you .text")).to_have_text("tokN1-fixed", timeout=WAIT)
            await plain.frame_locator("iframe.nojs-frame").locator("button[value='react:👍']").click()
            await expect(line(js, "tokJ1-fixed").locator(".chip")).to_have_text("👍 1", timeout=WAIT)
            await expect(log.locator(".stranger .reactions")).to_have_text("👍 1", timeout=WAIT)
            await plain.frame_locator("iframe.nojs-frame").locator("button[value=delete]").click()
            await expect(js.locator("#log .line.stranger.deleted .text")).to_have_text("message deleted", timeout=WAIT)
            await expect(log.locator(".you.deleted .text")).to_have_text("message deleted", timeout=WAIT)
            # the JS user deletes: the text leaves the no-JS screen
            await line(js, "tokJ1-fixed").locator("button.delete").click()
            await expect(log.locator(".stranger.deleted .text")).to_have_text("message deleted", timeout=WAIT)
            assert "tokJ1" not in await log.inner_text() and "tokN1" not in await log.inner_text()
            # the chat goes on after all the reloads
            await js.fill("#message", "tokJ2")
            await js.press("#message", "Enter")
            await expect(log.locator(".stranger .text").last).to_have_text("tokJ2", timeout=WAIT)
            await plain.screenshot(path=str(ARTIFACTS / "web_nojs_rich.png"))
        finally:
            await browser.close()
