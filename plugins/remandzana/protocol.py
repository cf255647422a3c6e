"""remandzana wire format: the streamed chat page parsed incrementally, and the /send form encoded (no I/O)."""

from __future__ import annotations

import codecs
import enum
import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode

__all__ = [
    "ChatLine",
    "Classified",
    "FORM_FIELDS",
    "Garbage",
    "HEARTBEAT",
    "Item",
    "Kind",
    "MAX_LINE",
    "MAX_MESSAGE",
    "MAX_PREAMBLE",
    "ProtocolError",
    "SendForm",
    "StreamParser",
    "SystemLine",
    "classify",
    "encode_send",
    "is_own",
    "own_name",
    "parse_form",
    "plain",
]

MAX_MESSAGE = 500  # the server's `message` field: 1-500 characters
MAX_PREAMBLE = 256 * 1024  # a real page is about 6 KiB; past this it is not a remandzana page
MAX_LINE = 64 * 1024  # 500 characters escaped is at most 3,000; anything far longer is garbage
FORM_FIELDS = ("clavis", "timestamp", "setup", "salt", "signature")

HEARTBEAT = "\n<b><b><b></b></b></b>"  # idle filler, about every 6 s (a bare space every 0.5 s)
_LINE_OPEN = '\n<div class="line">'
_SYSTEM_OPEN = '<div class="system">'
_SENDER_OPEN = '<span class="sender">'
_SYSTEM_END = "</div></div>"
_CHAT_END = "</bdi></div>"
_LINES_START = re.compile(r'<article\s+id="lines"\s*>')
_SRCDOC = re.compile(r'<iframe\b[^>]*\bid="send"[^>]*\bsrcdoc="([^"]*)"', re.S)
_CHAT = re.compile(r'<span class="sender">(?P<sender>.*?)</span>\s*<bdi class="message">(?P<text>.*)</bdi>$', re.S)
_TAG = re.compile(r"<[^<>]*>")
_FILLER = " \t\r"
_MARKER_MAX = max(len(HEARTBEAT), len(_LINE_OPEN))


class ProtocolError(ValueError):
    """The server's stream cannot be a remandzana chat page."""


@dataclass(frozen=True, slots=True)
class SendForm:
    """The hidden fields of the send form (reusable for 24 h) and where it posts."""

    fields: dict[str, str] = field(hash=False)
    action: str = "/send"

    @property
    def setup(self) -> bool:
        """True when the form submits a role setup (the asker's question), not a chat line."""
        return self.fields.get("setup", "").lower() == "true"


@dataclass(frozen=True, slots=True)
class SystemLine:
    """A line no person typed, as plain text (tags stripped, entities decoded)."""

    text: str
    html: str = ""  # the raw markup, for extracting the question


@dataclass(frozen=True, slots=True)
class ChatLine:
    """A line a person typed: `sender` as shown ("Stranger", "Bob (You)"), `text` plain."""

    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that fit no known chunk shape; skipped so the stream goes on."""

    size: int


class Kind(str, enum.Enum):
    """What a system line means to a client."""

    SEARCHING = "searching"  # "Looking for a random...", "Looking for two randoms...", ...
    ASK_WAITING = "ask_waiting"  # "Waiting for your question..." (asker: post it with setup=true)
    ASK_ACCEPTED = "ask_accepted"  # "Your question is: ..."
    ASK_REJECTED = "ask_rejected"  # "Question rejected (...)."
    PAIRED_TWO = "paired_two"  # "Found someone. Say hi!"
    PAIRED_THREE = "paired_three"  # "Found two people. Say hi!"
    PAIRED_ASKER = "paired_asker"  # "Found two people. Watch them discuss your question!"
    PAIRED_DISCUSS = "paired_discuss"  # "Found a question. Question: Q"
    PAIRED_GLOBAL = "paired_global"  # "Welcome to the room. ..."
    LEFT = "left"  # "The random left.", "The OP left.", "Stranger left.", "Bob left."
    NOTICE = "notice"  # anything else: shown as a server notice


@dataclass(frozen=True, slots=True)
class Classified:
    """A system line's meaning; `value` is the question (PAIRED_DISCUSS) or who left (LEFT)."""

    kind: Kind
    value: str | None = None


_DISCUSS_PREFIX = "Found a question. Question: "
_QUESTION_SPAN = re.compile(r'<span class="question">(.*)</span>', re.S)
_LEFT_NAME = re.compile(r"^(?P<who>[A-Z][A-Za-z]{0,31}) left\.$")
_FIXED: dict[str, Kind] = {
    "Waiting for your question...": Kind.ASK_WAITING,
    "Found someone. Say hi!": Kind.PAIRED_TWO,
    "Found two people. Say hi!": Kind.PAIRED_THREE,
    "Found two people. Watch them discuss your question!": Kind.PAIRED_ASKER,
}
# Who each fixed leave line names: the random / the stranger in two-person and question rooms, the asker.
_LEFT_FIXED = {"The random left.": "Stranger", "Stranger left.": "Stranger", "The OP left.": "OP"}


def plain(markup: str) -> str:
    """Text of a server-made HTML fragment: tags dropped first, then entities decoded.

    Order matters: person-typed text arrives escaped (`&lt;b&gt;`), so it survives tag
    stripping and comes out as the literal characters the person typed.
    """
    return html.unescape(_TAG.sub("", markup))


def classify(line: SystemLine) -> Classified:
    """What a system line means (pure; exact wording of the server's lobbies)."""
    text = line.text.strip()
    kind = _FIXED.get(text)
    if kind is not None:
        return Classified(kind)
    if text in _LEFT_FIXED:
        return Classified(Kind.LEFT, _LEFT_FIXED[text])
    if text.startswith(_DISCUSS_PREFIX):
        found = _QUESTION_SPAN.search(line.html)
        question = plain(found.group(1)) if found else text[len(_DISCUSS_PREFIX) :]
        return Classified(Kind.PAIRED_DISCUSS, question)
    if text.startswith("Looking for "):
        return Classified(Kind.SEARCHING)
    if text.startswith("Welcome to the room."):
        return Classified(Kind.PAIRED_GLOBAL)
    if text.startswith("Your question is:"):
        return Classified(Kind.ASK_ACCEPTED)
    if text.startswith("Question rejected"):
        return Classified(Kind.ASK_REJECTED)
    left = _LEFT_NAME.match(text)
    if left:
        return Classified(Kind.LEFT, left.group("who"))
    return Classified(Kind.NOTICE)


def is_own(sender: str) -> bool:
    """True for the server's echo of our own line: "You" (two, question) or "Bob (You)" (three)."""
    return sender == "You" or sender.endswith("(You)")


def own_name(sender: str) -> str | None:
    """Our name in a three-person room ("Bob" from "Bob (You)"); None where we are just "You"."""
    if sender.endswith("(You)") and sender != "(You)":
        return sender[: -len("(You)")].strip() or None
    return None


class _FormParser(HTMLParser):
    """Collects the send form's action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action") or None
        elif tag == "input" and values.get("name") in FORM_FIELDS:
            self.fields[values["name"]] = values.get("value", "")


def parse_form(page: str) -> SendForm | None:
    """The send form of a chat page (inside the iframe's escaped srcdoc) or of a /send answer.

    None when the page holds no complete form (the asker's "notalk" answer, a 403 page).
    """
    found = _SRCDOC.search(page)
    markup = html.unescape(found.group(1)) if found else page
    parser = _FormParser()
    parser.feed(markup)
    parser.close()
    if not all(parser.fields.get(name) for name in FORM_FIELDS):
        return None
    return SendForm(dict(parser.fields), parser.action or "/send")


def encode_send(form: SendForm, message: str) -> bytes:
    """The urlencoded body of POST /send: the five hidden fields plus the message."""
    pairs = [(name, form.fields[name]) for name in FORM_FIELDS]
    pairs.append(("message", message))
    return urlencode(pairs).encode("ascii")


Item = SendForm | SystemLine | ChatLine | Garbage


class StreamParser:
    """Incremental parser of one chat stream; `feed(text)` returns what became complete.

    The first item is the SendForm (or a ProtocolError is raised when the preamble cannot be a
    chat page); then lines. Filler (spaces, the nested-<b> heartbeat) is consumed silently and
    chunks may be split anywhere, even inside a tag or an entity.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._in_lines = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def started(self) -> bool:
        """True once the preamble (and its form) has been read."""
        return self._in_lines

    def feed(self, data: bytes | str) -> list[Item]:
        """Add bytes (UTF-8, split anywhere) or text from the stream; return the items now complete."""
        self._buf += self._decoder.decode(data) if isinstance(data, bytes) else data
        out: list[Item] = []
        if not self._in_lines:
            self._preamble(out)
            if not self._in_lines:
                return out
        self._lines(out)
        return out

    def _preamble(self, out: list[Item]) -> None:
        found = _LINES_START.search(self._buf)
        if found is None:
            if len(self._buf) > MAX_PREAMBLE:
                raise ProtocolError("no chat page: the stream never opened the lines")
            return
        form = parse_form(self._buf[: found.start()])
        if form is None:
            raise ProtocolError("no send form in the chat page")
        out.append(form)
        self._buf = self._buf[found.end() :]
        self._in_lines = True

    def _lines(self, out: list[Item]) -> None:
        buf = self._buf
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in _FILLER:
                pos += 1
            if pos >= len(buf):
                break
            if buf.startswith(HEARTBEAT, pos):
                pos += len(HEARTBEAT)
                continue
            if buf.startswith(_LINE_OPEN, pos):
                end = self._line_end(buf, pos + len(_LINE_OPEN))
                if end is None:
                    if len(buf) - pos > MAX_LINE:  # never closed: skip it rather than grow forever
                        skip = self._next_start(buf, pos + 1)
                        out.append(Garbage(skip - pos))
                        pos = skip
                        continue
                    break
                out.append(self._line(buf[pos + len(_LINE_OPEN) : end]))
                pos = end
                continue
            if len(buf) - pos < _MARKER_MAX:  # maybe the start of a marker split by the network
                tail = buf[pos:]
                if HEARTBEAT.startswith(tail) or _LINE_OPEN.startswith(tail):
                    break
            skip = self._next_start(buf, pos + 1)
            out.append(Garbage(skip - pos))
            pos = skip
        self._buf = buf[pos:]

    @staticmethod
    def _next_start(buf: str, start: int) -> int:
        # Known chunks all begin with "\n<"; resynchronise on the next one (or the end).
        at = buf.find("\n", start)
        return len(buf) if at < 0 else at

    @staticmethod
    def _line_end(buf: str, body: int) -> int | None:
        # Person text is escaped, so the first closing sequence really ends the line, and the start
        # of a next chunk inside a line means it was cut off: it then ends there (and is reported
        # garbage). Only a chunk's own opening counts: a message may end in "\n" before "</bdi>".
        if buf.startswith(_SYSTEM_OPEN, body):
            at = buf.find(_SYSTEM_END, body)
            at = -1 if at < 0 else at + len(_SYSTEM_END)
        elif buf.startswith(_SENDER_OPEN, body):
            at = buf.find(_CHAT_END, body)
            at = -1 if at < 0 else at + len(_CHAT_END)
        elif len(buf) - body < max(len(_SYSTEM_OPEN), len(_SENDER_OPEN)) and (
            _SYSTEM_OPEN.startswith(buf[body:]) or _SENDER_OPEN.startswith(buf[body:])
        ):
            return None  # the kind of line is not known yet
        else:
            at = buf.find("</div>", body)  # unknown line shape: take it whole and report it
            at = -1 if at < 0 else at + len("</div>")
        stop = None if at < 0 else at
        cuts = [c for c in (buf.find(_LINE_OPEN, body, stop), buf.find(HEARTBEAT, body, stop)) if c >= 0]
        if cuts:
            return min(cuts)
        return None if at < 0 else at

    @staticmethod
    def _line(body: str) -> SystemLine | ChatLine | Garbage:
        if body.startswith(_SYSTEM_OPEN) and body.endswith(_SYSTEM_END):
            inner = body[len(_SYSTEM_OPEN) : -len(_SYSTEM_END)]
            return SystemLine(plain(inner), inner)
        found = _CHAT.match(body[: -len("</div>")]) if body.endswith("</div>") else None
        if found is None:
            return Garbage(len(body))
        sender = plain(found.group("sender")).strip()
        if sender.endswith(":"):
            sender = sender[:-1].rstrip()
        return ChatLine(sender, html.unescape(found.group("text")))
