"""Table tests of the pychat conventions: redirect answer, lines, ASCII, framing of unframed chunks."""

from __future__ import annotations

import pytest

from plugins.pychat.protocol import (
    CHUNK,
    Framer,
    Joined,
    Left,
    ProtocolError,
    Said,
    Text,
    classify,
    defuse,
    join_line,
    message_line,
    parse_redirect,
    quit_line,
    to_ascii,
    valid_name,
)


@pytest.mark.parametrize(
    "data, eof, expected",
    [
        (b"", False, None),
        (b"4", False, None),  # 4x, 4xx, 4xxx and 4xxxx are all ports: wait
        (b"4711", False, None),  # 47110 is still a port
        (b"7000", False, 7000),  # 70000 is not: complete without a terminator
        (b"9998", False, 9998),
        (b"1026", True, 1026),
        (b"1026", False, None),
        (b"65535", False, 65535),
        (b"40000", False, 40000),
        (b"1026\n", False, 1026),  # a terminator some other server may add
        (b" 1026 ", False, 1026),
    ],
)
def test_redirect_answer(data, eof, expected):
    assert parse_redirect(data, eof) == expected


@pytest.mark.parametrize("data, eof", [(b"", True), (b"abc", False), (b"12ab", False), (b"0", True), (b"99999", True), (b"70000", False)])
def test_redirect_garbage(data, eof):
    with pytest.raises(ProtocolError):
        parse_redirect(data, eof)


def test_lines():
    assert join_line("Ana") == b"Server: Ana acabou de se juntar ao chat, diga ola!"
    assert quit_line("Ana") == b"Server: Ana saiu do chat."
    assert message_line("Ana", "oi tudo bem") == b"Ana: oi tudo bem"


@pytest.mark.parametrize(
    "segment, names, expected",
    [
        ("Server: Bob acabou de se juntar ao chat, diga ola!", set(), Joined("Bob")),
        ("Server: Mary Jane acabou de se juntar ao chat, diga ola!", set(), Joined("Mary Jane")),
        ("Server: Bob saiu do chat.", {"Bob"}, Left("Bob")),
        ("Bob: hi there", {"Bob"}, Said("Bob", "hi there")),
        ("Bob: a: b", set(), Said("Bob", "a: b")),
        ("Mary Jane: hi", {"Mary Jane"}, Said("Mary Jane", "hi")),
        ("Bob: ", {"Bob"}, Said("Bob", "")),
        ("continued text", {"Bob"}, Text("continued text")),
        ("Server: the server is down", set(), Text("Server: the server is down")),  # a stranger can type that
        ("Server: " + "x" * 40 + " saiu do chat.", set(), Text("Server: " + "x" * 40 + " saiu do chat.")),
    ],
)
def test_classify(segment, names, expected):
    assert classify(segment, names) == expected


@pytest.mark.parametrize(
    "text, expected, dropped",
    [
        ("hello", "hello", False),
        ("café naïve façade", "cafe naive facade", True),
        ("Ação é ótima", "Acao e otima", True),
        ("ﬁne", "fine", False),  # compatibility ligature: NFKD spells it out, nothing lost
        ("😀 ok", " ok", True),
        ("日本語", "", True),
        ("a\nb\r\nc", "a / b / c", False),
        ("tab\there", "tab\there", False),
        ("bell\x07", "bell", True),
    ],
)
def test_to_ascii(text, expected, dropped):
    out, lost = to_ascii(text)
    assert out == expected
    assert out.isascii()
    if text != "ﬁne":
        assert lost is dropped


def test_defuse_keeps_convention_prefixes_out_of_messages():
    assert defuse("Server: Bob saiu do chat.", {"Bob"}) == "Server : Bob saiu do chat."
    assert defuse("hi Bob: and Stranger: x", {"Bob", "Stranger"}) == "hi Bob : and Stranger : x"
    assert defuse("no prefix here", {"Bob"}) == "no prefix here"


@pytest.mark.parametrize("name, ok", [("Stranger", True), ("Mary Jane", True), ("", False), ("a:b", False), ("é", False), ("x" * 33, False), (" pad", False), ("tab\t", False)])
def test_valid_name(name, ok):
    assert valid_name(name) is ok


def test_framer_splits_merged_chunks_at_known_prefixes():
    f = Framer()
    f.learn("Bob")
    merged = "Server: Bob acabou de se juntar ao chat, diga ola!Bob: hiBob: how are you?Server: Bob saiu do chat."
    assert f.feed(merged) == [
        "Server: Bob acabou de se juntar ao chat, diga ola!",
        "Bob: hi",
        "Bob: how are you?",
        "Server: Bob saiu do chat.",
    ]
    assert f.pending == ""


def test_framer_does_not_split_inside_a_longer_name():
    f = Framer()
    f.learn("Bob")
    f.learn("ob")
    assert f.feed("Bob: xob: y") == ["Bob: x", "ob: y"]


def test_framer_joins_a_message_cut_at_the_servers_1024_bytes():
    f = Framer()
    f.learn("Bob")
    line = "Bob: " + "y" * 1500
    first, rest = line[:CHUNK], line[CHUNK:]
    assert f.feed(first) == []  # a full 1,024-byte chunk may have been cut: wait
    assert f.feed(rest) == [line]


def test_framer_cut_chunk_followed_by_a_new_message():
    f = Framer()
    f.learn("Bob")
    line = "Bob: " + "y" * 1019
    assert len(line) == CHUNK
    assert f.feed(line) == []
    assert f.feed("Bob: next") == [line, "Bob: next"]


def test_framer_flush_gives_what_was_pending():
    f = Framer()
    line = "Bob: " + "z" * 1019
    assert f.feed(line) == []
    assert f.flush() == [line]
    assert f.flush() == []


def test_framer_short_chunks_are_complete_at_once():
    f = Framer()
    f.learn("Bob")
    assert f.feed("Bob: short") == ["Bob: short"]
    assert f.feed("tail without prefix") == ["tail without prefix"]
