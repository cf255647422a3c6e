"""Pure protocol tables: /start queries, /start and /events answers, event mapping."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qs

import pytest

from bridge.events import (
    Connected,
    Disconnected,
    Message,
    Mode,
    Question,
    Reason,
    ServerNotice,
    Start,
    StoppedTyping,
    Typing,
    Waiting,
)
from plugins.omegle import protocol as p
from plugins.omegle import query as q
from plugins.omegle import translate


def test_random_id_uses_omegle_alphabet():
    for _ in range(200):
        rid = q.random_id()
        assert len(rid) == 8 and set(rid) <= set(q.RANDID_ALPHABET)
    assert not set("01IO") & set(q.RANDID_ALPHABET)
    assert q.random_id(random.Random(1).choice) == q.random_id(random.Random(1).choice)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (Start(), {"lang": ["en"]}),
        (Start(language="ceb"), {"lang": ["ceb"]}),
        (Start(interests=("cats", "jazz ü")), {"lang": ["en"], "topics": ['["cats","jazz ü"]']}),
        (Start(mode=Mode.ANSWER), {"lang": ["en"], "wantsspy": ["1"]}),
        (Start(answer_questions=True, interests=("x",)), {"lang": ["en"], "wantsspy": ["1"]}),
        (Start(mode=Mode.ASK, question="cats & dogs?"), {"lang": ["en"], "ask": ["cats & dogs?"]}),
    ],
)
def test_start_query(start, expected):
    query = parse_qs(q.start_query(start, "ABCD2345"))
    assert query.pop("randid") == ["ABCD2345"]
    assert query.pop("caps") == ["recaptcha2"] and query.pop("rcs") == ["1"]
    assert query.pop("firstevents") == ["1"]
    assert query == expected
    assert "wantspy" not in q.start_query(start, "ABCD2345").replace("wantsspy", "")  # the seed's typo


def test_start_query_options_and_order():
    params = q.start_params(Start(), "R2345678", caps=None, firstevents=False)
    assert params == [("randid", "R2345678"), ("lang", "en")]
    names = [k for k, _ in q.start_params(Start(interests=("a",)), "R2345678")]
    assert names == ["caps", "rcs", "firstevents", "randid", "lang", "topics"]  # python-omegle's order
    assert json.loads(dict(q.start_params(Start(interests=("a", "b")), "R")).get("topics")) == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "client_id", "events"),
    [
        ('{"clientID": "shard2:abc", "events": [["waiting"]]}', "shard2:abc", (p.OmegleWaiting(),)),
        ('{"clientID": "x1", "events": [["connected"], ["commonLikes", ["a"]]]}', "x1",
         (p.OmegleConnected(), p.CommonLikes(("a",)))),
        ('{"clientID": "x1"}', "x1", ()),
        ('{"clientID": "x1", "events": null}', "x1", ()),
        ('"fn8Hkg"', "fn8Hkg", ()),
        (b'"central2:xyz"', "central2:xyz", ()),
    ],
)
def test_parse_start(body, client_id, events):
    answer = p.parse_start(body)
    assert answer.client_id == client_id and answer.events == events


@pytest.mark.parametrize(
    "body",
    ["", "win", "<html>", "{}", '{"clientID": 5}', "[]", "null", '""', '"a\\nb"', '{"clientID": "x", "events": {}}',
     b"\xff\xfe", '"' + "a" * 600 + '"'],
)
def test_parse_start_errors(body):
    with pytest.raises(p.ProtocolError):
        p.parse_start(body)


EVENT_TABLE = [
    (["waiting"], p.OmegleWaiting()),
    (["connected"], p.OmegleConnected()),
    (["commonLikes", ["cats", "dogs"]], p.CommonLikes(("cats", "dogs"))),
    (["question", "why?"], p.OmegleQuestion("why?")),
    (["gotMessage", "hi"], p.GotMessage("hi")),
    (["typing"], p.OmegleTyping()),
    (["stoppedTyping"], p.OmegleStoppedTyping()),
    (["strangerDisconnected"], p.StrangerDisconnected()),
    (["spyMessage", "Stranger 1", "yo"], p.SpyMessage("Stranger 1", "yo")),
    (["spyTyping", "Stranger 2"], p.SpyTyping("Stranger 2")),
    (["spyStoppedTyping", "Stranger 1"], p.SpyStoppedTyping("Stranger 1")),
    (["spyDisconnected", "Stranger 2"], p.SpyDisconnected("Stranger 2")),
    (["serverMessage", "be nice"], p.ServerMessage("be nice")),
    (["statusInfo", {"count": 1234, "servers": ["front1"]}], p.StatusInfo(1234)),
    (["statusInfo", {}], p.StatusInfo(None)),
    (["count", 77], p.Count(77)),
    (["count", "78"], p.Count(78)),
    (["identDigests", "abc,def"], None),
    (["suggestSpyee"], p.SuggestSpyee()),
    (["recaptchaRequired", "6Le..."], p.RecaptchaRequired("6Le...")),
    (["recaptchaRequired"], p.RecaptchaRequired("")),
    (["recaptchaRejected", "k"], p.RecaptchaRejected("k")),
    (["antinudeBanned"], p.AntinudeBanned()),
    (["error", "You are banned"], p.Error("You are banned")),
    (["connectionDied"], p.ConnectionDied()),
    (["partnerCollege", "x"], None),
    (["somethingNew"], None),
]


@pytest.mark.parametrize(("raw", "event"), EVENT_TABLE)
def test_parse_event(raw, event):
    assert p.parse_event(raw) == event


@pytest.mark.parametrize(
    "raw",
    [
        "waiting", [], [5], ["gotMessage"], ["gotMessage", 5], ["commonLikes", "cats"], ["commonLikes", [1]],
        ["spyMessage", "Stranger 3", "x"], ["spyMessage", "[Bridge] notice", "x"], ["spyMessage", "Stranger 1"],
        ["spyTyping"], ["question", None], ["serverMessage"],
    ],
)
def test_parse_event_errors(raw):
    with pytest.raises(p.ProtocolError):
        p.parse_event(raw)


def test_parse_events_answers():
    assert p.parse_events("null") == ()
    assert p.parse_events("[]") == ()
    assert p.parse_events('[["identDigests","a"],["typing"]]') == (p.OmegleTyping(),)
    assert p.parse_events(b'[["gotMessage","\\u00e9"]]') == (p.GotMessage("é"),)


def test_unknown_event_is_logged_at_debug(caplog):
    caplog.set_level("DEBUG", logger="plugins.omegle.protocol")
    assert p.parse_events('[["fancyNewThing", 1]]') == ()
    assert "fancyNewThing" in caplog.text


@pytest.mark.parametrize("body", ["", "fail", "win", "[", '{"a": 1}', '"x"', "5", "[[]]", '[["x"], 3]'])
def test_parse_events_malformed_is_a_protocol_error(body):
    with pytest.raises(p.ProtocolError) as info:
        p.parse_events(body)
    assert "/events" in str(info.value) or "event" in str(info.value)


@pytest.mark.parametrize(
    ("body", "count"),
    [('{"count": 5, "servers": []}', 5), ("123", 123), ('{"servers": []}', None), ('{"count": -1}', None), ("true", None)],
)
def test_parse_status(body, count):
    assert p.parse_status(body) == count


def test_action_ok():
    assert p.action_ok("win") and p.action_ok("win\n")
    assert not p.action_ok("fail") and not p.action_ok("")


# ---- translation -------------------------------------------------------------------------------

def batches(*answers: str, spy: bool = False) -> tuple[list, translate.Translator]:
    tr = translate.Translator(spy=spy)
    out: list = []
    for answer in answers:
        out.extend(tr.batch(p.parse_events(answer)))
    return out, tr


TRANSLATION_TABLE = [
    # random chat: waiting, connected, message, typing, disconnect
    (['[["waiting"]]', '[["connected"]]', '[["typing"]]', '[["gotMessage","hi"]]', '[["strangerDisconnected"]]'],
     False,
     [Waiting(), Connected(), Typing(), Message("hi"), Disconnected(reason=Reason.STRANGER)]),
    # commonLikes in the connected batch
    (['[["waiting"]]', '[["connected"],["commonLikes",["cats","tea"]]]'], False,
     [Waiting(), Connected(common_interests=("cats", "tea"))]),
    # answerer: question in the connected batch
    (['[["connected"],["question","Cats or dogs?"]]', '[["gotMessage","cats"]]'], False,
     [Connected(question="Cats or dogs?"), Message("cats")]),
    # a later question is a Question event; a repeated one is not
    (['[["connected"],["question","Q1"]]', '[["question","Q1"]]', '[["question","Q2"]]'], False,
     [Connected(question="Q1"), Question("Q2")]),
    # events before connected: gotMessage implies connected; the late connected is ignored
    (['[["waiting"]]', '[["gotMessage","early"],["connected"]]'], False,
     [Waiting(), Connected(), Message("early")]),
    (['[["typing"]]', '[["connected"]]'], False, [Connected(), Typing()]),
    # stoppedTyping before connected is dropped
    (['[["stoppedTyping"]]', '[["connected"]]', '[["stoppedTyping"]]'], False, [Connected(), StoppedTyping()]),
    # spy: labelled strangers
    (['[["connected"],["question","Q?"]]', '[["spyTyping","Stranger 1"],["spyMessage","Stranger 1","a"]]',
      '[["spyStoppedTyping","Stranger 2"]]', '[["spyDisconnected","Stranger 2"]]'], True,
     [Connected(question="Q?", strangers=("Stranger 1", "Stranger 2")), Typing("Stranger 1"),
      Message("a", "Stranger 1"), StoppedTyping("Stranger 2"),
      Disconnected(stranger="Stranger 2", reason=Reason.STRANGER)]),
    # serverMessage and the ignorable ones
    (['[["serverMessage","hello \\u202eevil"],["identDigests","x"],["count",9]]'], False,
     [ServerNotice("hello evil")]),
    (['[["waiting"],["suggestSpyee"]]'], False, [Waiting(), ServerNotice(translate.SUGGEST_SPYEE_TEXT)]),
    # captcha, ban, error, connectionDied end the chat with a notice naming the reason
    (['[["waiting"],["recaptchaRequired","key"]]', '[["connected"]]'], False,
     [Waiting(), ServerNotice(translate.CAPTCHA_TEXT), Disconnected(reason=Reason.REFUSED)]),
    (['[["recaptchaRejected","key"],["connected"]]'], False,
     [ServerNotice(translate.CAPTCHA_REJECTED_TEXT), Disconnected(reason=Reason.REFUSED)]),
    (['[["antinudeBanned"]]'], False, [ServerNotice(translate.BANNED_TEXT), Disconnected(reason=Reason.REFUSED)]),
    (['[["connected"]]', '[["error","Server overloaded"],["gotMessage","after"]]'], False,
     [Connected(), ServerNotice("The stranger service reported an error: Server overloaded"),
      Disconnected(reason=Reason.ERROR)]),
    (['[["error"]]'], False,
     [ServerNotice("The stranger service reported an error: no detail"), Disconnected(reason=Reason.ERROR)]),
    (['[["connected"],["connectionDied"]]'], False,
     [Connected(), ServerNotice(translate.DIED_TEXT), Disconnected(reason=Reason.ERROR)]),
    # nothing after the end, even in the same batch
    (['[["strangerDisconnected"],["gotMessage","ghost"]]', '[["gotMessage","ghost2"]]'], False,
     [Disconnected(reason=Reason.STRANGER)]),
]


@pytest.mark.parametrize(("answers", "spy", "expected"), TRANSLATION_TABLE)
def test_translation(answers, spy, expected):
    out, tr = batches(*answers, spy=spy)
    assert out == expected
    finals = [e for e in out if isinstance(e, Disconnected)]
    assert len(finals) <= 1 and all(e.final for e in finals)
    assert tr.done == bool(finals)


def test_counts_are_kept():
    _, tr = batches('[["statusInfo",{"count":10}]]', '[["count",12]]')
    assert tr.count == 12


def test_server_text_is_capped():
    out, _ = batches(json.dumps([["serverMessage", "x" * 5000]]))
    assert len(out[0].text) <= translate.MAX_SERVER_TEXT
