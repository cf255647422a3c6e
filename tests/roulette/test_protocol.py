"""Table tests of the chat-roulette wire format: client lines, server lines, the typed payload."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import Message, StoppedTyping, Typing
from plugins.roulette.protocol import (
    Ack,
    Bounced,
    Comm,
    Exit,
    Ids,
    Pair,
    Ping,
    ProtocolError,
    ServerError,
    Unknown,
    comm_line,
    connect_line,
    decode_payload,
    encode_payload,
    encode_text,
    exit_line,
    make_uco,
    parse_line,
    pong_line,
)

IDS = Ids("sbabc123", "s1", "n1")


@pytest.mark.parametrize("make", [connect_line, pong_line, exit_line, lambda ids: comm_line(ids, "x")])
def test_every_client_line_has_the_four_string_keys(make):
    raw = make(IDS)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    obj = json.loads(raw)
    for key in ("cmd", "uco", "session", "nonce"):
        assert isinstance(obj[key], str)
    assert (obj["uco"], obj["session"], obj["nonce"]) == ("sbabc123", "s1", "n1")


@pytest.mark.parametrize(
    "make, cmd", [(connect_line, "connect"), (pong_line, "pong"), (exit_line, "exit"), (lambda i: comm_line(i, "d"), "comm")]
)
def test_commands(make, cmd):
    assert json.loads(make(IDS))["cmd"] == cmd


def test_comm_line_is_ascii_and_carries_data_unchanged():
    raw = comm_line(IDS, 'héllo "😀"\n')
    raw.decode("ascii")
    assert json.loads(raw)["data"] == 'héllo "😀"\n'


@pytest.mark.parametrize(
    "prefix, rand, expected",
    [
        ("sb", "0123abcd", "sb0123abcd"),
        ("s-b", "ab_cd", "sbabcd"),
        ("sb", "x" * 40, "sb" + "x" * 22),
        ("", "é1ä2", "12"),
    ],
)
def test_uco_is_alphanumeric_and_cut_to_24(prefix, rand, expected):
    assert make_uco(prefix, rand) == expected


def _dumped(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))


# Any text, lone surrogates, quotes, backslashes and control characters included.
TEXTS = st.text(st.characters(blacklist_categories=()), max_size=60)


@settings(max_examples=2000, deadline=None)
@given(uco=TEXTS, session=TEXTS, nonce=TEXTS, data=TEXTS)
def test_comm_line_and_the_message_payload_are_the_bytes_of_json_dumps(uco, session, nonce, data):
    # Both are written out by hand (one of each per message): they must stay byte for byte what
    # json.dumps of their objects gives, in the same key order.
    ids = Ids(uco, session, nonce)
    assert comm_line(ids, data) == (
        _dumped({"cmd": "comm", "uco": uco, "session": session, "nonce": nonce, "data": data}) + "\n"
    ).encode("ascii")
    assert encode_text(data) == encode_payload(Message(data)) == _dumped({"type": "message", "text": data})


def test_typing_payloads_are_the_json_of_their_type():
    assert encode_payload(Typing()) == '{"type":"typing"}'
    assert encode_payload(StoppedTyping()) == '{"type":"stopped_typing"}'


@pytest.mark.parametrize(
    "event",
    [Message("hi"), Message('quote " and \\ and 😀 and\nnewline'), Typing(), StoppedTyping()],
)
def test_payload_round_trip(event):
    data = encode_payload(event)
    assert isinstance(data, str) and json.loads(data)["type"]
    assert decode_payload(data) == event


@pytest.mark.parametrize(
    "data, expected",
    [
        ("nahaha", Message("nahaha")),  # the real test client's data
        ("g^a mod p = 12345", Message("g^a mod p = 12345")),
        ('{"type": "video"}', Message('{"type": "video"}')),  # unknown type: shown as it came
        ('{"type": "message", "text": 5}', Message('{"type": "message", "text": 5}')),
        ("[1, 2]", Message("[1, 2]")),
        ("42", Message("42")),
        ({"type": "message", "text": "as object"}, Message("as object")),
        ({"type": "typing"}, Typing()),
        ({"dh": 5}, Message('{"dh": 5}')),
        (7, Message("7")),
        (None, None),
        ("", None),
        ("   ", None),
        ('{"type": "message", "text": "  "}', None),
    ],
)
def test_decode_payload_of_other_clients(data, expected):
    assert decode_payload(data) == expected


@pytest.mark.parametrize(
    "line, expected",
    [
        (b'{"ack": "n1"}\n', Ack("n1")),
        (b'{"cmd": "pair", "uco": "987654"}\n', Pair("987654")),
        (b'{"cmd": "ping"}', Ping()),
        (b'{"cmd": "comm", "uco": "1", "session": "1", "nonce": "1", "data": "x"}', Comm("x")),
        (b'{"cmd": "comm", "uco": "1"}', Comm(None)),
        (b'{"exit": true}', Exit(None)),
        (b'{"exit": true, "reason": "new session"}', Exit("new session")),
        (b'{"error": "message too long"}', ServerError("message too long")),
        (b'{"error": "Unknown command [x]"}', ServerError("Unknown command [x]")),
        (b'{"error": "no peer", "msg": {"cmd": "comm", "data": "{\\"type\\":\\"message\\",\\"text\\":\\"a\\"}"}}',
         Bounced("no peer", "message")),
        (b'{"error": "no peer", "msg": {"cmd": "comm", "data": "{\\"type\\":\\"typing\\"}"}}', Bounced("no peer", "typing")),
        (b'{"error": "failed", "msg": {"cmd": "comm", "data": "plain"}}', Bounced("failed", "message")),
        (b'{"error": "no peer", "msg": {"cmd": "comm"}}', Bounced("no peer", "other")),
        (b'{"cmd": "weird"}', Unknown()),
        (b'{}', Unknown()),
        (b"\n", None),
        (b"", None),
    ],
)
def test_parse_server_lines(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", [b"not json\n", b"[1,2]\n", b'"text"\n', b"{broken\n", b"\xff\xfe\n"])
def test_malformed_server_lines_raise(line):
    with pytest.raises(ProtocolError):
        parse_line(line)
