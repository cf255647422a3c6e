"""Table tests of the pure remandzana parser, classifier and form encoder."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.remandzana.protocol import (
    HEARTBEAT,
    MAX_PREAMBLE,
    ChatLine,
    Garbage,
    Kind,
    ProtocolError,
    SendForm,
    StreamParser,
    SystemLine,
    classify,
    encode_send,
    is_own,
    own_name,
    parse_form,
    plain,
)

FORM = (
    '<!DOCTYPE html><html><body><form action="/send" id="form" method="post">'
    '<input id="clavis" name="clavis" type="hidden" value="k-LM_9">'
    '<input id="timestamp" name="timestamp" type="hidden" value="1634000000">'
    '<input id="setup" name="setup" type="hidden" value="false">'
    '<input id="salt" name="salt" type="hidden" value="a1b2">'
    '<input id="signature" name="signature" type="hidden" value="f00d">'
    '<input id="message" maxlength="500" name="message" placeholder="" type="text" value="">'
    "<button>Send</button></form></body></html>"
)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")


PREAMBLE = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><nav>x</nav><main>\n'
    f'<iframe id="send" scrolling="no" srcdoc="{escape(FORM)}" tabindex="1"></iframe>\n'
    '<article id="lines">'
)
FIELDS = {"clavis": "k-LM_9", "timestamp": "1634000000", "setup": "false", "salt": "a1b2", "signature": "f00d"}


def system(html: str) -> str:
    return f'\n<div class="line"><div class="system">{html}</div></div>'


def chat(sender_html: str, text: str) -> str:
    return f'\n<div class="line"><span class="sender">{sender_html}:</span> <bdi class="message">{escape(text)}</bdi></div>'


def run(*chunks: str | bytes) -> list:
    parser = StreamParser()
    out: list = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def test_preamble_yields_the_form_once():
    items = run(PREAMBLE)
    assert items == [SendForm(FIELDS, "/send")]
    assert items[0].setup is False


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (system("Looking for a random..."), [SystemLine("Looking for a random...", "Looking for a random...")]),
        (
            chat('<span class="name bob">Stranger</span>', "hi <b>&amp;</b> \"q\" 'a'"),
            [ChatLine("Stranger", "hi <b>&amp;</b> \"q\" 'a'")],
        ),
        (
            chat('<span class="name bob">Bob</span> <span class="you">(You)</span>', "me"),
            [ChatLine("Bob (You)", "me")],
        ),
        (" " * 7 + HEARTBEAT + " " + HEARTBEAT, []),
        (system("one") + " " + HEARTBEAT + chat("<span>Stranger</span>", "two") + "   ", [
            SystemLine("one", "one"),
            ChatLine("Stranger", "two"),
        ]),
        (chat("<span>Stranger</span>", "line1\nline2\n<div class=\"line\">"), [
            ChatLine("Stranger", 'line1\nline2\n<div class="line">'),
        ]),
        (system('<span class="name bob">Bob</span> left.'), [SystemLine("Bob left.", '<span class="name bob">Bob</span> left.')]),
        ("\n<p>oops</p>" + system("after"), [Garbage(len("\n<p>oops</p>")), SystemLine("after", "after")]),
        ('\n<div class="line"><em>odd</em></div>' + system("after"), [
            Garbage(len("<em>odd</em></div>")),
            SystemLine("after", "after"),
        ]),
        ("junk" + system("x"), [Garbage(4), SystemLine("x", "x")]),
    ],
)
def test_lines(stream, expected):
    assert run(PREAMBLE, stream)[1:] == expected


def test_every_split_point_gives_the_same_items():
    stream = (
        PREAMBLE
        + " "
        + system("Found someone. Say hi!")
        + HEARTBEAT
        + chat('<span class="name bob">Stranger</span>', "héllo ✓ <script>x</script>")
        + "  "
        + system("The random left.")
    )
    whole = run(stream)
    data = stream.encode()
    for at in range(1, len(data)):
        assert run(data[:at], data[at:]) == whole, at
    assert run(*[bytes([b]) for b in data]) == whole  # byte by byte, UTF-8 split inside characters


def test_incomplete_line_waits():
    parser = StreamParser()
    parser.feed(PREAMBLE)
    assert parser.feed('\n<div class="line"><span class="sender">Stranger:</span> <bdi class="message">ha') == []
    assert parser.feed("lf</bdi></div>") == [ChatLine("Stranger", "half")]


def test_unclosed_huge_line_is_skipped_not_buffered_forever():
    parser = StreamParser()
    parser.feed(PREAMBLE)
    items = parser.feed('\n<div class="line"><div class="system">' + "x" * 70_000)
    assert len(items) == 1 and isinstance(items[0], Garbage)
    assert parser.feed(system("back")) == [SystemLine("back", "back")]


def test_not_a_chat_page():
    with pytest.raises(ProtocolError):
        run("<html>" + "x" * (MAX_PREAMBLE + 10))
    with pytest.raises(ProtocolError):
        run('<html><body>no form<article id="lines">')


@pytest.mark.parametrize("text", ["\n", "a\n", "\n\n<", "x\n</bdi>"])
def test_text_ending_in_a_newline_is_one_chat_line(text):
    # A "\n" before the closing tag is not the start of a next chunk (hypothesis once found this).
    stream = PREAMBLE + chat("<span>Stranger</span>", text) + HEARTBEAT
    assert run(stream)[1:] == [ChatLine("Stranger", text)]


@given(st.lists(st.text(max_size=40), max_size=8), st.data())
@settings(max_examples=60, deadline=None)
def test_any_text_round_trips_whatever_the_splits(texts, data):
    stream = PREAMBLE + "".join(chat("<span>Stranger</span>", t) + " " for t in texts)
    raw = stream.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    items = run(*pieces)
    assert items[1:] == [ChatLine("Stranger", t) for t in texts]


@given(st.text(max_size=200))
@settings(max_examples=100, deadline=None)
def test_garbage_never_raises(noise):
    parser = StreamParser()
    parser.feed(PREAMBLE)
    parser.feed(noise)
    assert parser.feed(system("still alive"))[-1] == SystemLine("still alive", "still alive")


@pytest.mark.parametrize(
    ("html", "kind", "value"),
    [
        ("Looking for a random...", Kind.SEARCHING, None),
        ("Looking for two randoms...", Kind.SEARCHING, None),
        ("Looking for a question for you to discuss...", Kind.SEARCHING, None),
        ("Looking for people...", Kind.SEARCHING, None),
        ("Waiting for your question...", Kind.ASK_WAITING, None),
        ('Your question is: <span class="question">why?</span>', Kind.ASK_ACCEPTED, None),
        ("Question rejected (forbidden).", Kind.ASK_REJECTED, None),
        ("Found someone. Say hi!", Kind.PAIRED_TWO, None),
        ("Found two people. Say hi!", Kind.PAIRED_THREE, None),
        ("Found two people. Watch them discuss your question!", Kind.PAIRED_ASKER, None),
        (
            'Found a question. Question: <span class="question">cats &amp; dogs &lt;/span&gt;?</span>',
            Kind.PAIRED_DISCUSS,
            "cats & dogs </span>?",
        ),
        ("Welcome to the room. There are 3 people here (including you).", Kind.PAIRED_GLOBAL, None),
        ("Welcome to the room. You&#39;re the only one here right now.", Kind.PAIRED_GLOBAL, None),
        ("The random left.", Kind.LEFT, "Stranger"),
        ("The OP left.", Kind.LEFT, "OP"),
        ('<span class="name bob">Stranger</span> left.', Kind.LEFT, "Stranger"),
        ('<span class="name charlie">Charlie</span> left.', Kind.LEFT, "Charlie"),
        ('&lt; <span class="name">Anonymous</span> left.', Kind.NOTICE, None),
        ('&gt; <span class="name">Anonymous</span> joined.', Kind.NOTICE, None),
        ("You&#39;re not talking to anyone yet!", Kind.NOTICE, None),
        ("Pong.", Kind.NOTICE, None),
        ("Something went wrong. Please refresh the page.", Kind.NOTICE, None),
    ],
)
def test_classify(html, kind, value):
    found = classify(SystemLine(plain(html), html))
    assert (found.kind, found.value) == (kind, value)


@pytest.mark.parametrize(
    ("sender", "own", "name"),
    [("You", True, None), ("Bob (You)", True, "Bob"), ("Stranger", False, None), ("Alice", False, None), ("Anonymous", False, None)],
)
def test_own_echo(sender, own, name):
    assert is_own(sender) is own
    assert own_name(sender) == name


def test_parse_form_of_a_send_answer_and_of_notalk():
    assert parse_form(FORM) == SendForm(FIELDS, "/send")
    assert parse_form('<input id="message" placeholder="Your question was submitted." disabled>') is None
    setup = parse_form(FORM.replace('value="false"', 'value="true"'))
    assert setup is not None and setup.setup is True


def test_encode_send():
    body = encode_send(SendForm(FIELDS), "hé & <b>=?")
    assert parse_qsl(body.decode(), keep_blank_values=True) == [*FIELDS.items(), ("message", "hé & <b>=?")]


@pytest.mark.parametrize(
    "cut_off",
    ['\n<div class="line">', '\n<div class="line"><div class="system">half', '\n<div class="line"><span class="sender">X:</span> <bdi class="message">ha'],
)
def test_a_cut_off_line_does_not_swallow_the_next(cut_off):
    items = run(PREAMBLE, cut_off, system("next"), chat("<span>Stranger</span>", "and more"))
    assert isinstance(items[1], Garbage)
    assert items[2:] == [SystemLine("next", "next"), ChatLine("Stranger", "and more")]
