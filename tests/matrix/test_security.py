"""The bad inputs of security.md through a real Synapse, with the exact event content asserted."""

from __future__ import annotations

import re

from bridge.events import Message, ServerNotice
from tests.helpers import running

from .conftest import bridge_config, notice_with, paired

HTML = "org.matrix.custom.html"


def text_event(body: str, formatted: str) -> dict:
    return {"msgtype": "m.text", "body": body, "format": HTML, "formatted_body": formatted, "m.mentions": {}}


STRANGER_INPUTS = [
    # (what the stranger sends, the exact content the Matrix room gets)
    ("@room @everyone hi", text_event("Stranger: @room @everyone hi", "<b>Stranger:</b> @room @everyone hi")),
    (
        '<img src=x onerror=alert(1)><script>x</script><a href="javascript:evil()">y</a>',
        text_event(
            'Stranger: <img src=x onerror=alert(1)><script>x</script><a href="javascript:evil()">y</a>',
            "<b>Stranger:</b> &lt;img src=x onerror=alert(1)&gt;&lt;script&gt;x&lt;/script&gt;"
            "&lt;a href=&quot;javascript:evil()&quot;&gt;y&lt;/a&gt;",
        ),
    ),
    (
        "<mx-reply><blockquote>fake</blockquote></mx-reply>quoted",
        text_event(
            "Stranger: <mx-reply><blockquote>fake</blockquote></mx-reply>quoted",
            "<b>Stranger:</b> &lt;mx-reply&gt;&lt;blockquote&gt;fake&lt;/blockquote&gt;&lt;/mx-reply&gt;quoted",
        ),
    ),
    (
        "**[Bridge]** Stranger disconnected. Re-verify at https://evil.example",
        text_event(
            "Stranger: **[Bridge]** Stranger disconnected. Re-verify at https://evil.example",
            "<b>Stranger:</b> **[Bridge]** Stranger disconnected. Re-verify at https://evil.example",
        ),
    ),
    (
        "ok\nStranger has disconnected.\n<b>Stranger:</b> fake",
        text_event(
            "Stranger: ok\n    Stranger has disconnected.\n    <b>Stranger:</b> fake",
            "<b>Stranger:</b> ok<br>&nbsp;&nbsp;&nbsp;&nbsp;Stranger has disconnected.<br>&nbsp;&nbsp;&nbsp;&nbsp;&lt;b&gt;Stranger:&lt;/b&gt; fake",
        ),
    ),
    (
        "[Free Nitro](https://evil.example) https://matrix.to/#/@x:evil.example",
        text_event(
            "Stranger: [Free Nitro](https://evil.example) https://matrix.to/#/@x:evil.example",
            "<b>Stranger:</b> [Free Nitro](https://evil.example) https://matrix.to/#/@x:evil.example",
        ),
    ),
    ("a\u202eb\u200b\u200b\u200bc\x00d\x07e", text_event("Stranger: ab\u200bcde", "<b>Stranger:</b> ab\u200bcde")),
    ("x" + "\u0301" * 500, text_event("Stranger: x\u0301\u0301\u0301", "<b>Stranger:</b> x\u0301\u0301\u0301")),
    ("lone \ud800 surrogate", text_event("Stranger: lone ? surrogate", "<b>Stranger:</b> lone ? surrogate")),
]


async def test_stranger_bad_inputs_exact_content(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg, stranger_rate=1000, stranger_burst=1000) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        for n, (text, _) in enumerate(STRANGER_INPUTS, 1):
            rec.send("r", Message(text))  # one at a time: a burst would be merged into one event
            await alice.wait_for(lambda n=n: len(alice.messages(rid, me)) >= base + n)
        got = [e["content"] for e in alice.messages(rid, me)[base:]]
        assert got == [want for _, want in STRANGER_INPUTS]


def lines_attributed(content: dict) -> bool:
    """Each visual line (body and formatted_body) starts an attributed entry, continues one indented, or is the merge marker."""
    body = content["body"].split("\n")
    html = content["formatted_body"].split("<br>")
    marker = re.compile(r"^\d+ messages from Stranger were merged into one while delivery was slowed down\.$")
    ok_body = body[0].startswith("Stranger: ") and all(
        line.startswith("    ") or line.startswith("Stranger: ") or marker.match(line) for line in body[1:]
    )
    ok_html = html[0].startswith("<b>Stranger:</b> ") and all(
        line.startswith("&nbsp;" * 4) or line.startswith("<b>Stranger:</b> ") or re.match(r"^<i>\d+ messages from Stranger were merged", line)
        for line in html[1:]
    )
    return ok_body and ok_html


async def test_stranger_line_breaks_stay_inside_one_attributed_block(matrix, synapse):
    """9.9: a stranger's "hi\n\n\nStranger has disconnected." is m.text whose every line is visibly the stranger's."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg, stranger_rate=1000, stranger_burst=1000) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        fakes = [
            "hi\n\n\nStranger has disconnected.",
            "ok\nYou're now chatting with a random stranger. Say hi!\n2 messages from Stranger were merged into one while delivery was slowed down.",
        ]
        for n in range(6):  # a burst: some of them may be merged into one event
            rec.send("r", Message(fakes[n % 2] + f"\nend{n}"))
        await alice.wait_message(rid, me, "end5")
        got = [e["content"] for e in alice.messages(rid, me)[base:]]
        assert got and all(c["msgtype"] == "m.text" and c["m.mentions"] == {} for c in got)
        assert all(lines_attributed(c) for c in got), got
        first = got[0]
        assert first["body"].startswith("Stranger: hi\n    \n    \n    Stranger has disconnected.\n    end0")
        assert first["formatted_body"].startswith(
            "<b>Stranger:</b> hi<br>&nbsp;&nbsp;&nbsp;&nbsp;<br>&nbsp;&nbsp;&nbsp;&nbsp;<br>"
            "&nbsp;&nbsp;&nbsp;&nbsp;Stranger has disconnected.<br>&nbsp;&nbsp;&nbsp;&nbsp;end0"
        )


async def test_stranger_longest_message_is_one_escaped_event(matrix, synapse):
    """The hub caps text at 4,000 characters; escaped it stays one event far below 64 KiB
    (longer text from other backends is split into three parts: see test_units)."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        base = len(alice.messages(rid, me))
        rec.send("r", Message("<" * 4000))
        rec.send("r", Message("still here"))
        await alice.wait_message(rid, me, "Stranger: still here")
        parts = [e["content"] for e in alice.messages(rid, me)[base:]]
        assert parts[0] == text_event("Stranger: " + "<" * 4000, "<b>Stranger:</b> " + "&lt;" * 4000)
        assert len(parts) == 2


async def test_user_side_identifiers_never_reach_the_stranger(matrix, synapse):
    bot = await matrix.account()
    alice = await matrix.user("alice")
    other_bot = await matrix.user("otherbot")
    me = bot["user_id"]
    cfg = bridge_config(
        synapse.url, bot, allowed_inviters=[":localhost"], ignore_users=[r"@otherbot\d+:localhost"]
    )
    async with running(cfg) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        await alice.client.room_invite(rid, other_bot.user_id)
        await other_bot.wait_for(lambda: rid in other_bot.invites)
        await other_bot.client.join(rid)
        await alice.wait_member(rid, other_bot.user_id, "join")
        first = await alice.send(rid, "quote me")
        sent = [
            # a reply: the fallback (quote of alice's own message, with her mxid) is dropped
            {
                "msgtype": "m.text",
                "body": f"> <{alice.user_id}> quote me\n\nmy answer",
                "format": HTML,
                "formatted_body": f"<mx-reply><blockquote><a href='https://matrix.to/#/{alice.user_id}'>x</a></blockquote></mx-reply>my answer",
                "m.relates_to": {"m.in_reply_to": {"event_id": first}},
            },
            # an edit: an Edit event, never a new line (tests/matrix/test_rich_*.py follow it through)
            {
                "msgtype": "m.text",
                "body": "* fixed",
                "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": first},
            },
            # ids, aliases, links and media URLs of Matrix are replaced
            {"msgtype": "m.text", "body": f"ping {alice.user_id} in #secret:localhost !abc:localhost https://matrix.to/#/{alice.user_id} mxc://localhost/abcdef"},
            # media is not sent; the user is told
            {"msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/AbCdEf"},
            # notices are never relayed
            {"msgtype": "m.notice", "body": "a notice from a person"},
            {"msgtype": "m.emote", "body": "waves"},
            {"msgtype": "m.text", "body": "END"},
        ]
        for content in sent:
            await alice.send(rid, content)
        await other_bot.send(rid, "I am another bot")
        await alice.send(rid, "END2")
        await rec.wait_for("r", lambda e: isinstance(e, Message) and e.text == "END2", timeout=20)
        texts = [e.text for e in rec.events("r", Message)]
        assert texts == [
            "quote me",
            "my answer",
            "ping [user] in [room] [room] [link] [media]",
            "* waves",
            "END",
            "END2",
        ]
        await alice.wait_message(rid, me, notice_with("media is not sent to strangers"))
        assert not rec.events("r", ServerNotice)


async def test_stranger_text_never_highlights(matrix, synapse):
    """Synapse's push rules: a person writing alice's name highlights her; the same words from a
    stranger (m.mentions {}) do not, nor does @room."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    name = alice.user_id[1:].split(":")[0]  # the default display name is the localpart
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        rid = await paired(b, alice, me)
        await alice.client.room_invite(rid, bob.user_id)
        await bob.wait_for(lambda: rid in bob.invites)
        await bob.client.join(rid)
        control = await bob.send(rid, f"hey {name} look")  # a person: highlights (the rule works)
        rec.send("r", Message(f"hey {name} look @room"))
        relayed = await alice.wait_message(rid, me, f"Stranger: hey {name}")
        method, path = "GET", "/_matrix/client/v3/notifications?only=highlight&limit=50"
        resp = await alice.client.send(method, path, headers={"Authorization": f"Bearer {alice.client.access_token}"})
        highlighted = {n["event"]["event_id"] for n in (await resp.json())["notifications"]}
        assert control in highlighted
        assert relayed["event_id"] not in highlighted
