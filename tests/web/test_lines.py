"""Stranger text with newlines stays one attributed block on both pages: it cannot imitate a notice."""

from __future__ import annotations

from html.parser import HTMLParser

from playwright.async_api import async_playwright, expect

from bridge.events import Connected, Disconnected, Message, Start
from plugins.web import nojs_html

from .test_page import FLAGS, chromium

FAKE = "hi\n\n\nStranger has disconnected.\nYou're now chatting with a random stranger. Say hi!"

# Where the fake line's text and the real notice sit: every visual line of stranger text must
# start right of the "Stranger:" label, inside a bordered block; a real notice starts at the left.
GEOMETRY = """(selector) => {
  const visible = (node) => { const r = document.createRange(); r.selectNodeContents(node);
                               return [...r.getClientRects()].filter((rect) => rect.width > 0); };
  const line = [...document.querySelectorAll(selector)].find((l) => l.textContent.includes("Say hi!"));
  const notice = [...document.querySelectorAll(".line.notice")]
    .filter((n) => n.textContent.trim() === "Stranger has disconnected.").at(-1);
  const text = visible(line.querySelector(".text"));
  return {
    tops: text.map((r) => Math.round(r.top)), lefts: text.map((r) => r.left),
    whoRight: line.querySelector(".who").getBoundingClientRect().right,
    noticeLeft: visible(notice)[0].left,
    border: getComputedStyle(line).borderLeftWidth, noticeBorder: getComputedStyle(notice).borderLeftWidth,
  };
}"""


def check(geometry: dict) -> None:
    assert len(set(geometry["tops"])) >= 3, geometry  # the newlines do make separate visual lines
    assert min(geometry["lefts"]) >= geometry["whoRight"] - 0.5, geometry  # each one right of the label
    assert geometry["noticeLeft"] < geometry["whoRight"], geometry  # where a real notice starts
    assert geometry["border"] != "0px" and geometry["noticeBorder"] == "0px", geometry


async def test_newlines_in_stranger_text_stay_inside_its_attributed_block(bridge, web):
    rec = bridge.platforms["rec"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
        try:
            # the chat page
            rec.send("js", Start())
            page = await (await browser.new_context()).new_page()
            await page.goto(web.url + "/")
            await page.click("#stop")
            await rec.wait_for("js", Connected)
            rec.send("js", Message(FAKE))
            await expect(page.locator(".line.stranger .text").last).to_have_text(FAKE, timeout=10_000)
            rec.send("js", Disconnected())
            await expect(page.locator(".line.notice").last).to_have_text("Stranger has disconnected.", timeout=10_000)
            check(await page.evaluate(GEOMETRY, ".line.stranger"))

            # the no-JS page
            rec.send("plain", Start())
            plain = await (await browser.new_context(java_script_enabled=False)).new_page()
            await plain.goto(web.url + "/")
            await plain.click("#nojs-go")
            await rec.wait_for("plain", Connected)
            rec.send("plain", Message(FAKE))
            await expect(plain.locator(".nojs-log .stranger .text").last).to_have_text(FAKE, timeout=10_000)
            rec.send("plain", Disconnected())
            await expect(plain.locator(".nojs-log .notice").last).to_contain_text("disconnected", timeout=10_000)
            check(await plain.evaluate(GEOMETRY, ".nojs-log .line.stranger"))
        finally:
            await browser.close()


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text_in: dict[str, str] = {}
        self.opened: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        self.opened.append((tag, cls))
        self.stack.append(cls)

    def handle_endtag(self, tag):
        self.stack.pop()

    def handle_data(self, data):
        where = self.stack[-1] if self.stack else ""
        self.text_in[where] = self.text_in.get(where, "") + data


def test_the_nojs_html_keeps_stranger_text_in_one_attributed_element():
    (html,) = nojs_html.lines(Message(FAKE))
    parsed = _Elements()
    parsed.feed(html)
    assert parsed.opened == [("p", "line stranger"), ("b", "who"), ("bdi", "text")]
    assert parsed.text_in["text"] == FAKE  # newlines and all, inside the attributed line
    assert not parsed.stack
