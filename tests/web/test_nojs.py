"""The no-JavaScript chat over raw HTTP: a streamed HTML page per chat, a form to send."""

from __future__ import annotations

import asyncio
import codecs
import html
import re

import aiohttp

from bridge.events import Connected, Disconnected, Message, Mode, Reason, Start
from tests.helpers import running

from .client import RawClient
from .conftest import web_config

EVIL = '<script>alert(1)</script><img src=x onerror=alert(2)> & "q"'
ID_FIELD = re.compile(r'name="id" value="([A-Za-z0-9_-]{32})"')


class Stream:
    """One no-JS chat: the streamed page read incrementally, and its send form."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.response: aiohttp.ClientResponse | None = None
        self.text = ""
        self.cursor = 0
        self.id: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    async def start(self, **fields: str) -> Stream:
        self.response = await self.http.post(self.url + "/nojs/start", data=fields)
        assert self.response.status == 200, await self.response.text()
        await self.until('role="log"')
        srcdoc = re.search(r'srcdoc="([^"]*)"', self.text).group(1)
        self.id = ID_FIELD.search(html.unescape(srcdoc)).group(1)
        return self

    async def read(self) -> bool:
        chunk = await self.response.content.readany()
        self.text += self._decoder.decode(chunk, final=not chunk)
        return bool(chunk)

    async def until(self, needle: str, timeout: float = 10.0) -> str:
        """Read until `needle` appears after the last match; the text up to it."""
        async with asyncio.timeout(timeout):
            while (index := self.text.find(needle, self.cursor)) < 0:
                assert await self.read(), f"the stream ended before {needle!r}: {self.text[-500:]!r}"
        self.cursor = index + len(needle)
        return self.text[:self.cursor]

    async def to_end(self, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while await self.read():
                pass
        return self.text

    async def post(self, **fields: str) -> tuple[int, str]:
        data = {"id": self.id, **fields}
        async with self.http.post(self.url + "/nojs/send", data=data) as response:
            return response.status, await response.text()

    def close(self) -> None:
        self.response.close()


async def test_nojs_user_chats_with_a_room(bridge, web, http):
    rec = bridge.platforms["rec"]
    stream = await Stream(http, web.url).start(interests="Tea, jazz ")
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    assert "frame-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script" not in stream.text  # the page needs no script at all
    await stream.until("Looking for someone")
    rec.send("n1", Start(interests=("tea",)))
    assert (await rec.wait_for("n1", Connected)).common_interests == ("tea",)
    await stream.until("You both like")

    status, form = await stream.post(msg="hello <b>there</b>", action="send")
    assert status == 200
    assert ID_FIELD.search(form).group(1) == stream.id  # the id rides in a hidden field, POST only
    assert 'method="post" action="/nojs/send"' in form and "autofocus" in form
    assert (await rec.wait_for("n1", Message)).text == "hello <b>there</b>"
    await stream.until('<b class="who">You:</b> <bdi class="text">hello &lt;b&gt;there&lt;/b&gt;</bdi>')

    rec.send("n1", Message(EVIL))
    await stream.until('<b class="who">Stranger:</b> <bdi class="text">' + html.escape(EVIL) + "</bdi>")
    assert "<script>alert" not in stream.text and "<img src=x" not in stream.text

    stream.close()  # closing the page is leaving the chat
    ended = await rec.wait_for("n1", Disconnected)
    assert ended.reason == Reason.STRANGER
    async with asyncio.timeout(5):
        while len(web.clients):
            await asyncio.sleep(0.05)
    assert (await stream.post(msg="late", action="send"))[0] == 400
    assert not [m for m in rec.events("n1", Message) if m.text == "late"]


async def test_nojs_user_chats_with_an_omegle_protocol_client_and_stops(bridge, web, http):
    js = RawClient(http, web.url)
    await js.start()
    stream = await Stream(http, web.url).start()
    await js.until("connected")
    await stream.until("now chatting with a random stranger")
    assert await js.post("/send", msg=EVIL) == (200, "win")
    await stream.until(html.escape(EVIL))
    assert (await stream.post(msg="hi from no-JS ✓"))[0] == 200  # action defaults to send (Enter key)
    assert await js.until("gotMessage") == ["gotMessage", "hi from no-JS ✓"]
    assert (await stream.post(msg="   ", action="send"))[0] == 200  # blank: nothing sent
    status, form = await stream.post(action="stop")
    assert status == 200 and "This chat has ended." in form and 'target="_top"' in form
    assert 'name="id"' not in form  # the ended form no longer carries the id
    await js.until("strangerDisconnected")
    page = await stream.to_end()
    assert "You have disconnected." in page and page.rstrip().endswith("</html>")
    assert "New chat" in page
    assert not [e for e in js.events if e[0] == "gotMessage" and e[1] == "   "]


async def test_next_ends_the_chat_and_opens_a_new_stream_and_filler_keeps_it_alive(bridge, web, http):
    rec = bridge.platforms["rec"]
    web.nojs_keepalive = 0.1
    rec.send("n2", Start(interests=("x",)))
    first = await Stream(http, web.url).start(interests="x")
    await rec.wait_for("n2", Connected)
    await first.until("now chatting")
    await first.until("<!-- -->")  # quiet: filler arrives
    second = await Stream(http, web.url).start(id=first.id, action="next", interests="x")
    assert second.id != first.id
    assert "You have disconnected." in await first.to_end()
    assert (await rec.wait_for("n2", Disconnected)).reason == Reason.STRANGER
    await second.until("Looking for someone")
    assert len(web.clients) == 1
    second.close()


async def test_nojs_bad_inputs(bridge, web, http):
    stream = await Stream(http, web.url).start()
    js = RawClient(http, web.url)
    await js.start()
    url = web.url + "/nojs/send"
    for data in ({"msg": "x"}, {"id": "", "msg": "x"}, {"id": stream.id[:-1] + ("B" if stream.id.endswith("A") else "A"), "msg": "x"},
                 {"id": js.id, "msg": "x"}, {"id": stream.id.swapcase(), "action": "stop"}):
        async with http.post(url, data=data) as response:
            assert response.status == 400, data
            assert "This chat has ended." in await response.text()
    for data in ({"id": stream.id}, {"id": stream.id, "action": "dance", "msg": "x"}):
        async with http.post(url, data=data) as response:
            assert response.status == 400, data
    async with http.get(url, params={"id": stream.id, "msg": "x"}) as response:
        assert response.status == 405  # never an id in a URL
    huge = ("id=" + stream.id + "&msg=" + "x" * (2 * 1024 * 1024)).encode()
    async with http.post(url, data=huge, headers={"Content-Type": "application/x-www-form-urlencoded"}) as response:
        assert response.status == 413
    async with http.post(url, data=b"{}", headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
    async with http.post(web.url + "/nojs/start", data={"ask": "q" * 600}) as response:
        assert response.status == 400 and "longer than 500" in await response.text()
    async with http.post(web.url + "/nojs/start", data={"ask": "x"},
                         headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
    async with http.post(url, data={"id": stream.id, "msg": "x"}, headers={"Origin": "null"}) as response:
        assert response.status == 200  # form posts under no-referrer carry Origin: null
        assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    assert len(web.clients) == 2  # nothing above ended or created a chat
    stream.close()


async def test_nojs_streams_count_against_the_per_address_caps(http):
    async with running(web_config(max_sessions_per_address=2)) as bridge:
        web = bridge.platforms["web"]
        web.nojs_grace = 0.2
        streams = [await Stream(http, web.url).start() for _ in range(2)]
        async with http.post(web.url + "/nojs/start", data={}) as response:
            assert response.status == 429
            assert "Too many chats" in await response.text()
        streams[0].close()
        async with asyncio.timeout(5):
            while len(web.clients) > 1:
                await asyncio.sleep(0.05)
        third = await Stream(http, web.url).start()
        for stream in (streams[1], third):
            stream.close()


async def test_spy_without_javascript_watches_labelled_strangers(bridge, web, http):
    rec = bridge.platforms["rec"]
    spy = await Stream(http, web.url).start(ask="Cats <or> dogs?")
    assert 'name="msg"' not in html.unescape(spy.text)  # the asker cannot send
    for room in ("s1", "s2"):
        rec.send(room, Start(mode=Mode.ANSWER, answer_questions=True))
    await spy.until("watching two strangers discuss your question")
    await rec.wait_for("s1", Connected)
    rec.send("s1", Message("<i>cats</i>"))
    await spy.until('<b class="who">Stranger 1:</b> <bdi class="text">&lt;i&gt;cats&lt;/i&gt;</bdi>')
    assert (await spy.post(msg="x", action="send"))[0] == 400
    spy.close()


def test_pure_rendering_escapes_everything_and_maps_the_start_form():
    from bridge.events import Connected, Question, Typing, Waiting
    from plugins.web import nojs_html as nojs

    assert nojs.lines(Message("<b>x</b>", stranger='Str"anger <1>'), spy=True) == [
        '<p class="line stranger"><b class="who">Str&quot;anger &lt;1&gt;:</b> <bdi class="text">&lt;b&gt;x&lt;/b&gt;</bdi></p>\n'
    ]
    assert nojs.lines(Typing()) == []
    assert nojs.lines(Question("<q>")) == ['<p class="line notice">Question to discuss: &lt;q&gt;</p>\n']
    assert "&lt;i&gt;" in nojs.lines(Connected(common_interests=("<i>",)))[0]
    assert nojs.lines(Waiting())[0].startswith('<p class="line notice">')
    assert nojs.start_params({"interests": " Cats, , JAZZ ", "ask": " "}) == {"lang": "en", "topics": '["Cats", " JAZZ"]'}
    assert nojs.start_params({"ask": "Why?", "interests": "x"}) == {"lang": "en", "ask": "Why?"}
    assert nojs.start_params({"wantsspy": "on"}) == {"lang": "en", "wantsspy": "1"}
    form = nojs.send_form("A" * 32, {"interests": '"><script>'})
    assert '<script>' not in form and 'value="&quot;&gt;&lt;script&gt;"' in form
    assert 'name="msg"' not in nojs.send_form("A" * 32, {}, spy=True)
    assert nojs.page_head("A" * 32, {}).count("<iframe") == 1 and "<script" not in nojs.page_head("A" * 32, {})
