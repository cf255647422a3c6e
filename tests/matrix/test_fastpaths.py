"""The shortcuts give the full answer: scrub's quick answer, parse's quick refusal, classify without relations, send_plain."""

from __future__ import annotations

import re
import string
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.matrix import commands, inbound
from plugins.matrix.commands import Command, parse
from plugins.matrix.inbound import Ignore, Media, Said, classify, scrub

# Pieces that hit every pattern of scrub and of parse, their near misses and Unicode look-alikes
# (ſ and K fold to s and k when a pattern ignores case; İ lowercases to two characters).
_PIECES = [
    "@alice:example.org", "@a:[::1]:8448", "!room:hs.example", "#alias:hs.example", "!" + "A" * 43,
    "https://matrix.to/#/@bob:x.y", "HTTPS://MATRIX.TO/#/!r:x", "httpſ://matrix.to/#/x", "mxc://hs/abc", "MXC://HS/A",
    "mxc:/", "matrix.to", "@", "!", "#", "/", ":", "://", " ", "\n", "\t", "> <@a:b> quoted\n\n", "ſ", "K", "İ", "i\u0307", "é",
    "!stranger", "!STRANGER", "!ſtranger", "!stranger-admin", "/bot", "/BOT", "bot", "BOT", "start", "help", "next",
    "hello", "tok123", "a", "1", ".",
]  # fmt: skip
_TEXTS = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=4)), max_size=10).map("".join)
_PREFIXES = ["!stranger", "!sb", "/bot", "#s", "bot", "ſb", "İx"]


@given(_TEXTS)
@settings(max_examples=3000, deadline=None)
def test_scrub_gives_what_the_five_substitutions_give(text):
    assert scrub(text) == inbound._scrub(text)


@given(st.text(max_size=60))
@settings(max_examples=1000, deadline=None)
def test_scrub_gives_what_the_five_substitutions_give_on_any_text(text):
    assert scrub(text) == inbound._scrub(text)


# A prefix as a user may write it: any case, padded, then a separator and more text.
_SPELLINGS = {
    p: [p, p.upper(), p.lower(), p.swapcase(), p.casefold(), " " + p, "\n" + p, p[:-1], p + p[-1]] for p in _PREFIXES
}


@given(st.sampled_from(_PREFIXES), st.data())
@settings(max_examples=3000, deadline=None)
def test_parse_gives_what_the_full_parse_gives(prefix, data):
    body = data.draw(st.one_of(_TEXTS, st.tuples(st.sampled_from(_SPELLINGS[prefix]), st.sampled_from(["", " ", "\n", "x"]),
                                                 _TEXTS).map("".join)))
    assert parse(body, prefix) == commands._parse(body, prefix)


def test_the_quick_answers_rest_on_every_code_point():
    """No character but the mark itself lowercases to text holding an ASCII mark (parse's refusal);
    no character but @ ! # / matches them in a pattern that ignores case (scrub's answer)."""
    points = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    marks = set(string.punctuation)
    assert commands._PUNCTUATION == marks
    assert [c for c in points if c not in marks and any(m in c.lower() for m in marks)] == []
    for mark in "@!#/":
        pattern = re.compile(re.escape(mark), re.IGNORECASE)
        assert [c for c in points if c != mark and pattern.fullmatch(c)] == []


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("tok1", None),
        ("hello !stranger", None),
        ("!stranger", Command("help")),
        ("  !STRANGER next  ", Command("next")),
        ("!stranger\nstop", Command("stop")),
        ("!strangers start", None),
    ],
)
def test_parse_with_and_without_the_mark(body, want):
    assert parse(body, "!stranger") == want


@pytest.mark.parametrize(
    ("body", "prefix", "want"),
    [("BOT start", "bot", Command("start")), ("i\u0307x", "İx", Command("help")), ("/BOT stop", "/bot", Command("stop"))],
)
def test_parse_with_prefixes_that_start_with_a_letter(body, prefix, want):
    assert parse(body, prefix) == want


@pytest.mark.parametrize(
    ("content", "want"),
    [
        ({"msgtype": "m.text", "body": "hi @a:b.c"}, Said("hi [user]")),
        ({"msgtype": "m.text", "body": "> <@a:b> q\n\nanswer"}, Said("answer")),
        ({"msgtype": "m.text", "body": "> quoted\n\nanswer", "m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}, Said("answer")),
        ({"msgtype": "m.text", "body": "> quoted\n\nanswer", "m.relates_to": "not a relation"}, Said("> quoted\n\nanswer")),
        ({"msgtype": "m.text", "body": "* old", "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
          "m.new_content": {"msgtype": "m.text", "body": "new"}}, Said("(correction) new")),
        ({"msgtype": "m.text", "body": "* old", "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}},
         Ignore("edit without new content")),
        ({"msgtype": "m.text", "body": "!stranger stop", "m.relates_to": {"rel_type": "m.replace"},
          "m.new_content": {"msgtype": "m.text", "body": "!stranger stop"}}, Said("(correction) !stranger stop")),
        ({"msgtype": "m.image", "body": "x.png"}, Media("an image")),
    ],
)
def test_classify_with_and_without_relations(content, want):
    assert classify(content, prefix="!stranger") == want


async def test_send_plain_makes_the_request_nio_room_send_makes():
    """The sender's shortcut for rooms without encryption: the same method, path, body and headers as
    nio's room_send over a real socket, and the same response types back, for awkward room ids too."""
    import json as _json
    import random

    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from nio import AsyncClient, RoomSendError, RoomSendResponse

    from plugins.matrix.sender import send_plain

    seen: list[tuple[str, str, str, str, str]] = []

    async def send(request: web.Request) -> web.Response:
        body = await request.text()
        seen.append((request.method, request.raw_path, body, request.headers.get("Authorization", ""),
                     request.headers.get("Content-Type", "")))
        if _json.loads(body).get("refuse"):
            return web.json_response({"errcode": "M_FORBIDDEN", "error": "no"}, status=403)
        return web.json_response({"event_id": "$" + request.match_info["txn"]})

    app = web.Application()
    app.router.add_put("/_matrix/client/v3/rooms/{rid}/send/{kind}/{txn}", send)
    rng = random.Random(7)
    alphabet = "!:/?#%&+= .é\u2028ſ-_~abcXYZ019"
    cases = [("!room:hs.example", "m.room.message", "sbab12.3"), ("!a/b?c#d%:x", "m.reaction", "sb1.2.0"),
             ("!é ſ:[::1]:8448", "m.room.message", "weird/txn?#")]
    cases += [("!" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) + ":hs",
               rng.choice(["m.room.message", "m.reaction"]), "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
              for _ in range(60)]
    async with TestServer(app, host="127.0.0.1") as server:
        client = AsyncClient(str(server.make_url("")), "@bot:hs")
        client.access_token = "tok"
        try:
            for n, (rid, kind, txn) in enumerate(cases):
                content = {"msgtype": "m.text", "body": f"hi {n} é\n<b>", "m.mentions": {}, "refuse": n % 7 == 0}
                ours = await send_plain(client, rid, kind, content, txn)
                theirs = await client.room_send(rid, kind, content, tx_id=txn)
                assert seen[-2] == seen[-1], (rid, kind, txn)
                assert type(ours) is type(theirs) and type(ours) is (RoomSendError if n % 7 == 0 else RoomSendResponse)
                if isinstance(ours, RoomSendResponse):
                    assert (ours.event_id, ours.room_id) == (theirs.event_id, theirs.room_id) == ("$" + txn, rid)
        finally:
            await client.close()
    assert len(seen) == 2 * len(cases)
