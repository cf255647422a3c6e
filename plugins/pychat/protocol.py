"""pychat wire conventions: the redirect answer, the join/message/quit lines, framing of unframed chunks, ASCII."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "CHUNK",
    "Framer",
    "Joined",
    "Left",
    "ProtocolError",
    "Said",
    "Text",
    "classify",
    "defuse",
    "join_line",
    "message_line",
    "parse_redirect",
    "quit_line",
    "to_ascii",
    "valid_name",
]

CHUNK = 1024  # the room server reads and forwards at most this many bytes at a time
SERVER = "Server: "
JOIN_SUFFIX = " acabou de se juntar ao chat, diga ola!"
QUIT_SUFFIX = " saiu do chat."
MAX_NAME = 32
_SPOKEN = re.compile(r"([^:\n]{1,%d}): (.*)" % MAX_NAME, re.DOTALL)  # "NAME: text" of a name not yet known


class ProtocolError(ValueError):
    """The redirect port answered something other than a port number."""


# ---- the redirect ------------------------------------------------------------------------------


def parse_redirect(data: bytes, eof: bool) -> int | None:
    """The room port in the redirect answer, or None while more digits may still come.

    The server writes bare ASCII digits with no terminator and keeps the socket open, so the
    answer is complete at EOF, at any non-digit after the digits, or when another digit would
    make it an impossible port. Raises ProtocolError for anything that is not a port.
    """
    text = data.lstrip(b" \t\r\n")
    digits = len(text) - len(text.lstrip(b"0123456789"))
    if digits == 0:
        if text or eof:
            raise ProtocolError("no port number in the redirect answer")
        return None
    number = int(text[:digits])
    done = eof or digits < len(text) or number * 10 > 65535
    if not done:
        return None
    if text[digits:].strip(b" \t\r\n") or not 1 <= number <= 65535:
        raise ProtocolError("not a port number")
    return number


# ---- outgoing lines ----------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    """A display name the conventions can carry: printable ASCII, no colon, 1-32 characters."""
    return 0 < len(name) <= MAX_NAME and name.isascii() and name.isprintable() and ":" not in name and name == name.strip()


def join_line(name: str) -> bytes:
    """Sent once on joining a room: the other member's client shows it and we treat it as "connected"."""
    return f"{SERVER}{name}{JOIN_SUFFIX}".encode("ascii")


def quit_line(name: str) -> bytes:
    """Sent before closing: the only way the other member learns we left."""
    return f"{SERVER}{name}{QUIT_SUFFIX}".encode("ascii")


def message_line(name: str, text: str) -> bytes:
    """One message; `text` must already be ASCII (see to_ascii) and defused."""
    return f"{name}: {text}".encode("ascii")


def to_ascii(text: str) -> tuple[str, bool]:
    """Transliterate to ASCII (a non-ASCII byte kills the member's server thread).

    NFKD splits accented letters into letter + mark; what still is not ASCII is dropped.
    Returns the text and whether anything was removed (accents, characters). Line breaks become " / " (one chunk is one
    line in the reference client), other controls are dropped.
    """
    out = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    changed = out != text and not unicodedata.normalize("NFKD", text).isascii()
    out = re.sub(r"[ \t]*(\r\n|\r|\n)+[ \t]*", " / ", out)
    cleaned = "".join(ch for ch in out if ch.isprintable() or ch == "\t")
    return cleaned, changed or len(cleaned) < len(out)


def defuse(text: str, names: set[str]) -> str:
    """Keep a message from being read as a convention line or a split point by the receiver:
    "Server:" and "NAME:" of any known name get a space before the colon."""
    for prefix in sorted({"Server", *names}, key=len, reverse=True):
        text = text.replace(prefix + ":", prefix + " :")
    return text


# ---- incoming ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    """`Server: NAME acabou de se juntar ao chat, diga ola!`"""

    name: str


@dataclass(frozen=True, slots=True)
class Left:
    """`Server: NAME saiu do chat.`"""

    name: str


@dataclass(frozen=True, slots=True)
class Said:
    """`NAME: text`"""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Text:
    """A segment with no known prefix: the rest of a cut message, or a client of other habits."""

    text: str


def classify(segment: str, names: set[str]) -> Joined | Left | Said | Text:
    """What one recovered segment is."""
    if segment.startswith(SERVER):
        body = segment[len(SERVER) :]
        if body.endswith(JOIN_SUFFIX) and 0 < len(body) - len(JOIN_SUFFIX) <= MAX_NAME:
            return Joined(body[: -len(JOIN_SUFFIX)])
        if body.endswith(QUIT_SUFFIX) and 0 < len(body) - len(QUIT_SUFFIX) <= MAX_NAME:
            return Left(body[: -len(QUIT_SUFFIX)])
    for name in sorted(names, key=len, reverse=True):
        if segment.startswith(name + ": "):
            return Said(name, segment[len(name) + 2 :])
    match = _SPOKEN.fullmatch(segment)
    if match and not segment.startswith(SERVER):
        return Said(match.group(1), match.group(2))
    return Text(segment)


class Framer:
    """Recovers segments from unframed chunks (merged and split by the server and TCP).

    A new segment starts wherever "Server: " or "NAME: " of a known name starts. A segment at the
    end of a chunk of a full CHUNK bytes may have been cut by the server's 1024-byte reads: it
    stays pending until the next chunk or `flush()` (the caller flushes after a short quiet time).
    """

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.pending = ""

    def learn(self, name: str) -> None:
        self.names.add(name)

    def feed(self, chunk: str) -> list[str]:
        """Segments complete after this chunk."""
        buffer = self.pending + chunk
        segments = self.split(buffer)
        if len(chunk) >= CHUNK and segments:
            self.pending = segments.pop()
        else:
            self.pending = ""
        return [s for s in segments if s]

    def flush(self) -> list[str]:
        """Whatever is pending, as complete."""
        rest, self.pending = self.pending, ""
        return [rest] if rest else []

    def split(self, buffer: str) -> list[str]:
        """`buffer` cut before every known prefix (used again after a name is learnt)."""
        prefixes = [SERVER] + [name + ": " for name in self.names]
        matches: list[tuple[int, int]] = []
        for prefix in prefixes:
            at = buffer.find(prefix)
            while at >= 0:
                matches.append((at, at + len(prefix)))
                at = buffer.find(prefix, at + 1)
        cuts: list[int] = []
        covered = -1
        for start, end in sorted(matches, key=lambda m: (m[0], -m[1])):
            if start < covered:
                continue  # inside a longer prefix found earlier ("Bob: " holds "ob: ")
            if start > 0:
                cuts.append(start)
            covered = end
        bounds = [0, *cuts, len(buffer)]
        return [buffer[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
