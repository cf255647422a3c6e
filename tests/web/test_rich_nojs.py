"""The rich relay in the no-JavaScript chat over raw HTTP: lines changed by edits, deletions and
reactions redraw the page, replies quote, and the send form edits, deletes and reacts."""

from __future__ import annotations

import codecs

from bridge.events import Connected, Edit, Message, Reaction, Retract, Room, Start
from plugins.web.nojs_rich import REDRAW

from .test_nojs import Stream


async def reopen(stream: Stream) -> None:
    """What the browser does after a redraw: load the chat page again (the cookie names the chat)."""
    stream.response = await stream.http.get(stream.url + "/nojs/chat")
    assert stream.response.status == 200
    stream.text, stream.cursor = "", 0
    stream._decoder = codecs.getincrementaldecoder("utf-8")()
    await stream.until('role="log"')


async def redrawn(stream: Stream) -> str:
    """The stream ends with the refresh; the page loaded again shows the lines as they are now."""
    page = await stream.to_end()
    assert page.endswith(REDRAW), page[-300:]
    await reopen(stream)
    await stream.until("<!--" + " " * 1024 + "-->")  # the head; the transcript follows in the same write
    while not stream.text.rstrip().endswith("</p>"):
        assert await stream.read()
    return stream.text


async def test_nojs_lines_follow_edits_deletions_reactions_and_replies(bridge, web, http):
    rec = bridge.platforms["rec"]
    stream = await Stream(http, web.url).start()
    rec.send("nr1", Start())
    await rec.wait_for("nr1", Connected)
    await stream.until("now chatting")
    room = Room("web", next(iter(web.clients.by_key)))
    await web.deliver(room, Message("theirs-tok <b>", ref="c1"))
    await stream.until('<p class="line stranger" id="s1"><b class="who">Stranger:</b> <bdi class="text">theirs-tok &lt;b&gt;')
    assert (await stream.post(msg="mine-tok"))[0] == 200
    await stream.until('<p class="line you" id="u1"><b class="who">You:</b> <bdi class="text">mine-tok</bdi>')
    # a reply that comes while its line is on the screen: appended with the quote, no redraw
    await web.deliver(room, Message("reply-tok", ref="c2", reply_to="u1", quote="mine-tok"))
    await stream.until('<span class="quote">&gt; You: mine-tok</span><bdi class="text">reply-tok</bdi>')

    await web.deliver(room, Edit("s1", "theirs-edited"))
    page = await redrawn(stream)
    assert "theirs-edited</bdi> <small class=\"edited\">(edited)</small>" in page
    assert "theirs-tok" not in page and "reply-tok" in page

    await web.deliver(room, Reaction("u1", "👍"))
    await web.deliver(room, Reaction("u1", "🎉"))  # two changes, one redraw
    page = await redrawn(stream)
    assert '<bdi class="text">mine-tok</bdi><span class="reactions">👍 1 · 🎉 1</span>' in page

    await web.deliver(room, Retract("s1"))
    page = await redrawn(stream)
    assert '<p class="line stranger deleted" id="s1"><b class="who">Stranger:</b> <i class="text">message deleted</i>' in page
    assert "theirs-edited" not in page

    # the form: edit the user's last message, react to the stranger's last one, delete the message
    status, form = await stream.post(msg="mine-edited", action="edit")
    assert status == 200 and 'value="edit"' in form
    page = await redrawn(stream)
    assert 'mine-edited</bdi> <small class="edited">(edited)</small>' in page and "mine-tok" not in page
    assert (await stream.post(action="react:😂"))[0] == 200
    page = await redrawn(stream)
    assert '<bdi class="text">reply-tok</bdi><span class="reactions">😂 1</span>' in page
    assert (await stream.post(action="react:💩"))[0] == 400
    assert (await stream.post(action="delete"))[0] == 200
    page = await redrawn(stream)
    assert '<p class="line you deleted" id="u1">' in page and "mine-edited" not in page
    # nothing left to delete: the form comes back, nothing is sent
    assert (await stream.post(action="delete"))[0] == 200
    rec.send("nr1", Message("marker"))
    await stream.until("marker")
    stream.close()


async def test_a_flood_of_changes_redraws_the_no_js_page_once_per_gap(bridge, web, http):
    import asyncio

    rec = bridge.platforms["rec"]
    web.nojs_redraw_gap = 1.0
    web.nojs_grace = 5.0  # the browser comes back at once; this test reloads only after the flood
    stream = await Stream(http, web.url).start()
    rec.send("nr2", Start())
    await rec.wait_for("nr2", Connected)
    await stream.until("now chatting")
    room = Room("web", next(iter(web.clients.by_key)))
    await web.deliver(room, Message("target", ref="c1"))
    await stream.until('id="s1"')
    await web.deliver(room, Reaction("s1", "👍"))
    assert "👍 1" in await redrawn(stream)  # the first change redraws at once
    flood = ["😀", "😃", "😄", "😁", "😆", "😅", "🤣", "😊", "😇", "🙂"]
    for emoji in flood:  # ten changes within well under the gap
        await web.deliver(room, Reaction("s1", emoji))
        await asyncio.sleep(0.02)
    redraws = 0
    while True:
        page = await redrawn(stream)
        redraws += 1
        if all(f"{emoji} 1" in page for emoji in flood):
            break
    assert redraws <= 2, redraws  # not one reload per reaction
    stream.close()
