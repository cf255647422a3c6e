"""Table tests of the pure parts: event rendering, batch rules, /start parsing, forms, addresses."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Image,
    Message,
    Mode,
    Question,
    Reaction,
    Reason,
    Retract,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from plugins.web.protocol import ProtocolError, client_address, parse_form, parse_start, status_payload
from plugins.web.render import PICTURE_NOT_SHOWN, ends_chat, render, worth_answering

PIC = Image(b"x", "image/png", 1, 1)
SHOWN = {"url": "/image/" + "A" * 32, "width": 1, "height": 1}

RENDER = [
    (Waiting(), {}, [["waiting"]]),
    (Connected(), {}, [["connected"]]),
    (Connected(), {"wants_likes": True}, [["connected"], ["commonLikes", []]]),
    (Connected(common_interests=("cats",)), {}, [["connected"], ["commonLikes", ["cats"]]]),
    (Connected(question="Q?"), {}, [["connected"], ["question", "Q?"]]),
    (Connected(question="Q?", strangers=("Stranger 1", "Stranger 2")), {"spy": True}, [["connected"], ["question", "Q?"]]),
    (Message("<b>hi</b>"), {}, [["gotMessage", "<b>hi</b>"]]),
    (Message("hi", "Stranger 2"), {"spy": True}, [["spyMessage", "Stranger 2", "hi"]]),
    (Typing(), {}, [["typing"]]),
    (Typing("Stranger 1"), {"spy": True}, [["spyTyping", "Stranger 1"]]),
    (StoppedTyping(), {}, [["stoppedTyping"]]),
    (StoppedTyping("Stranger 1"), {"spy": True}, [["spyStoppedTyping", "Stranger 1"]]),
    (Question("why?"), {}, [["question", "why?"]]),
    (ServerNotice("note"), {}, [["serverMessage", "note"]]),
    (Disconnected(reason=Reason.STRANGER), {}, [["strangerDisconnected"]]),
    (Disconnected("Stranger 1", Reason.STRANGER), {"spy": True}, [["spyDisconnected", "Stranger 1"]]),
    (Disconnected(reason=Reason.USER), {}, []),
    (Disconnected(reason=Reason.TIMEOUT), {},
     [["serverMessage", "Nobody was found in time. Start again to keep looking."], ["strangerDisconnected"]]),
    (Disconnected(reason=Reason.ERROR), {},
     [["serverMessage", "The connection to the stranger was lost."], ["error", "The connection to the stranger was lost."],
      ["strangerDisconnected"]]),
    (Disconnected(reason="banned"), {},
     [["serverMessage", "Stranger has disconnected (banned)."], ["error", "Stranger has disconnected (banned)."],
      ["strangerDisconnected"]]),
    (Disconnected("Bob", Reason.STRANGER, final=False), {}, [["serverMessage", "Bob has disconnected."]]),
    # the rich extension (clients that started with rich=1) ...
    (Message("hi", ref="c1"), {"rich": True, "line": "s1"}, [["gotMessage", "hi", {"ref": "s1"}]]),
    (Message("re", ref="c2", reply_to="u1", quote="q"), {"rich": True, "line": "s2"},
     [["gotMessage", "re", {"ref": "s2", "reply": "u1", "quote": "q"}]]),
    (Message("hi", "Stranger 1", ref="c1"), {"rich": True, "spy": True, "line": "s1"},
     [["spyMessage", "Stranger 1", "hi", {"ref": "s1"}]]),
    (Message("", ref="c1", image=PIC), {"rich": True, "line": "s1", "image": SHOWN},
     [["gotMessage", "", {"ref": "s1", "image": SHOWN}]]),
    (Message("look", ref="c1", image=PIC), {"rich": True, "line": "s1"},
     [["gotMessage", "look", {"ref": "s1"}], ["serverMessage", PICTURE_NOT_SHOWN]]),
    (Edit("s1", "new"), {"rich": True}, [["edit", "s1", "new"]]),
    (Retract("s1"), {"rich": True}, [["retract", "s1"]]),
    (Reaction("u1", "👍"), {"rich": True}, [["react", "u1", "👍", True]]),
    (Reaction("u1", "👍", add=False, stranger="Bob"), {"rich": True}, [["react", "u1", "👍", False, "Bob"]]),
    # ... and the core's text fallback for every other client
    (Message("hi", ref="c1"), {"line": "s1"}, [["gotMessage", "hi"]]),
    (Message("re", ref="c2", reply_to="u1", quote="q"), {"line": "s2"}, [["gotMessage", "> q\nre"]]),
    (Edit("s1", "new"), {}, [["gotMessage", "* corrected: new"]]),
    (Edit("s1", "new", "Stranger 1"), {"spy": True}, [["spyMessage", "Stranger 1", "* corrected: new"]]),
    (Retract("s1"), {}, []),
    (Reaction("u1", "👍"), {}, []),
    (Message("", ref="c1", image=PIC), {}, [["serverMessage", PICTURE_NOT_SHOWN]]),
]


@pytest.mark.parametrize(("event", "options", "expected"), RENDER)
def test_render(event, options, expected):
    assert render(event, **options) == expected


def test_every_rendered_end_is_worth_answering_and_ends_the_chat():
    for event, options, out in RENDER:
        if isinstance(event, Disconnected) and out:
            assert worth_answering(out)
        assert ends_chat(event) == (isinstance(event, Disconnected) and event.final and event.reason != Reason.USER)


@pytest.mark.parametrize(
    ("batch", "ok"),
    [
        ([["commonLikes", ["a"]]], False),
        ([["question", "q"]], False),
        ([["statusInfo", {}], ["count", 3], ["identDigests", "x"], ["error", "e"]], False),
        ([["question", "q"], ["gotMessage", "x"]], True),
        ([["spyTyping", "Stranger 1"]], True),
        ([], False),
    ],
)
def test_batches_of_only_ignorable_events_are_held(batch, ok):
    assert worth_answering(batch) is ok


START = [
    ({}, Start(), dict(spy=False, wants_likes=False, firstevents=False)),
    ({"lang": "DE", "firstevents": "1"}, Start(language="de"), dict(firstevents=True)),
    ({"topics": '["Cats", " cats ", "", "Jazz  music"]'}, Start(interests=("cats", "jazz music")), dict(wants_likes=True)),
    ({"topics": "[]"}, Start(), dict(wants_likes=True)),
    ({"wantsspy": "1"}, Start(mode=Mode.ANSWER, answer_questions=True), {}),
    ({"ask": "  Cats   or dogs? ", "topics": '["x"]'}, Start(mode=Mode.ASK, question="Cats or dogs?"), dict(spy=True)),
    ({"caps": "recaptcha2", "rcs": "1", "spid": "", "m": "1", "group": "unmon", "cc": "x", "randid": "Z"}, Start(), {}),
    ({"lang": "ceb"}, Start(language="ceb"), {}),
]


@pytest.mark.parametrize(("params", "start", "flags"), START)
def test_parse_start(params, start, flags):
    got = parse_start(params)
    assert got.start == start
    for key, value in flags.items():
        assert getattr(got, key) == value


@pytest.mark.parametrize(
    "params",
    [
        {"lang": "english"},
        {"lang": "1"},
        {"topics": "nope"},
        {"topics": '"cats"'},
        {"topics": '[["a"]]'},
        {"topics": "[" * 100_000 + "]" * 100_000},  # deep nesting: RecursionError in json
        {"topics": '["' + "x" * 65 + '"]'},
        {"ask": ""},
        {"ask": "x" * 501},
        {"ask": "fine question", "wantsspy": "1"},
    ],
)
def test_parse_start_refuses(params):
    with pytest.raises(ProtocolError):
        parse_start(params)


def test_parse_form():
    form = "application/x-www-form-urlencoded"
    assert parse_form(b"id=a%20b&msg=x+y&msg=z", form + "; charset=UTF-8") == {"id": "a b", "msg": "x y"}
    assert parse_form(b"", "") == {}
    assert parse_form(b"", "application/octet-stream") == {}
    assert parse_form(b"msg=", form) == {"msg": ""}
    for body, ctype in ((b'{"id": 1}', "application/json"), (b"id=1", "text/plain"), (b"id=1", ""), (b"id=%ff", form)):
        with pytest.raises(ProtocolError):
            parse_form(body, ctype)


def _reference_form(body: bytes) -> dict[str, str] | None:
    """What parse_form gave when it called parse_qsl (None: ProtocolError)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=64)
    except ValueError:  # UnicodeDecodeError too
        return None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(["a", "id", "=", "&", "+", "%", "2", "0", "C3", "A9", "ff", "%E2%82%AC", "é", " "]),
                max_size=24))
def test_parse_form_gives_what_parse_qsl_gave(parts):
    """parse_form splits the form itself (every /send and /events body): the same fields, and a
    ProtocolError exactly where parse_qsl raised, for bodies made of the characters that matter."""
    body = "".join(parts).encode()
    expected = _reference_form(body) if body else {}
    try:
        got = parse_form(body, "application/x-www-form-urlencoded")
    except ProtocolError:
        got = None
    assert got == expected


def test_parse_form_field_count_limit_is_parse_qsl_s():
    form = "application/x-www-form-urlencoded"
    assert len(parse_form("&".join(f"f{n}=1" for n in range(64)).encode(), form)) == 64
    with pytest.raises(ProtocolError):
        parse_form("&".join(f"f{n}=1" for n in range(65)).encode(), form)


def test_client_address_uses_the_right_most_proxy_entry():
    assert client_address("127.0.0.1", None) == "127.0.0.1"
    assert client_address("127.0.0.1", "") == "127.0.0.1"
    assert client_address("127.0.0.1", "1.1.1.1, 2.2.2.2") == "2.2.2.2"
    assert client_address(None, None) == "unknown"


def test_status_payload_has_omegle_fields():
    status = status_payload(7, now=1.5)
    assert status["count"] == 7 and status["timestamp"] == 1.5
    assert {"servers", "spyQueueTime", "spyeeQueueTime", "force_unmon", "antinudeservers"} <= set(status)


def test_a_message_is_shown_as_the_fallback_rules_say():
    """A plain client gets a message as bridge.fallback's text (cut at MAX_PLAIN, a reply with its
    quote), a rich one as it is with its line id; the answer is the same whichever path render takes."""
    from bridge.hygiene import CUT_MARKER
    from plugins.web.render import MAX_PLAIN

    long = "x" * (MAX_PLAIN + 10)
    [[kind, shown]] = render(Message(long))
    assert kind == "gotMessage" and len(shown) == MAX_PLAIN and shown.endswith(CUT_MARKER)
    assert render(Message(long), rich=True, line="s1") == [["gotMessage", long, {"ref": "s1"}]]
    assert render(Message("yes", quote="are you there")) == [["gotMessage", "> are you there\nyes"]]
    assert render(Message("yes", reply_to="s1", quote="are you there"), rich=True, line="s2") == [
        ["gotMessage", "yes", {"ref": "s2", "reply": "s1", "quote": "are you there"}]
    ]
    assert render(Message("hi", "Stranger 1"), spy=True, rich=True) == [["spyMessage", "Stranger 1", "hi"]]
