"""Plain-text hygiene shared by every platform: strip what can hide, spoof or crash, cap what can flood."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "cut", "split"]

# Bidi embeddings/overrides/isolates and the BOM: they reorder or hide text around them.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\ufeff"
# C0/C1 controls except tab and newline; DEL.
_CONTROL = "".join(chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)])
# Invisible format characters that carry nothing a reader sees (but can smuggle text or blank a
# message): the soft hyphen, deprecated format controls, invisible operators, interlinear
# annotation marks, musical formatting controls, tag characters, and the Hangul fillers.
_INVISIBLE = "".join(
    chr(c)
    for c in [
        0x00AD, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0x2061, 0x2065), *range(0x206A, 0x2070),
        *range(0xFFF9, 0xFFFC), *range(0x1D173, 0x1D17B), 0xE0001, *range(0xE0020, 0xE0080),
    ]
)  # fmt: skip
_TABLE = str.maketrans({**dict.fromkeys(_BIDI + _CONTROL + _INVISIBLE), "\u2028": "\n", "\u2029": "\n"})
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\u180e"
_ZERO_WIDTH_RUN = re.compile(f"[{_ZERO_WIDTH}]{{2,}}")
_BLANK_LINES = re.compile("\n{4,}")
# Characters that show nothing on their own: a message of only these (and white space) is empty.
_BLANK = frozenset(_ZERO_WIDTH + "\u2800\u3000\ufe0e\ufe0f")
MAX_COMBINING = 3  # marks per base character: enough for real scripts, not for "zalgo" towers
CUT_MARKER = " […]"


def clean(text: str, limit: int | None = None) -> str:
    """Return `text` without controls, bidi overrides, invisible format characters, lone
    surrogates or towers of marks; line and paragraph separators become newlines, and text that
    shows nothing at all (only zero-width characters and white space) becomes "".

    Called on every message in both directions before a platform renders it. With `limit`,
    the result is cut to at most that many characters, ending with a visible marker.
    """
    if text.isascii() and text.isprintable():  # most messages: no control, no line break, nothing to do
        return cut(text, limit) if limit is not None else text
    if not text.isascii():
        # Lone surrogates cannot be encoded anywhere downstream; replace instead of crashing.
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text
        text = _cap_marks(text.translate(_TABLE))
        text = _ZERO_WIDTH_RUN.sub("\u200b", text)
        if all(ch in _BLANK or ch.isspace() for ch in text):
            return ""
    else:
        text = text.translate(_TABLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BLANK_LINES.sub("\n\n\n", text)
    return cut(text, limit) if limit is not None else text


def cut(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, ending with a visible marker when anything was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(CUT_MARKER))] + CUT_MARKER


def split(text: str, size: int, parts: int) -> list[str]:
    """Split `text` into at most `parts` chunks of `size` characters, on white space where
    possible; the last chunk is cut with a marker if text remains."""
    chunks: list[str] = []
    rest = text
    while rest and len(chunks) < parts:
        if len(rest) <= size:
            chunks.append(rest)
            rest = ""
            break
        if len(chunks) == parts - 1:
            chunks.append(cut(rest, size))
            rest = ""
            break
        at = rest.rfind("\n", size // 2, size)
        if at < 0:
            at = rest.rfind(" ", size // 2, size)
        if at < 0:
            at = size
        chunks.append(rest[:at])
        rest = rest[at:].lstrip(" \n")
    return chunks


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _cap_marks(text: str) -> str:
    # Every mark counts: combining (U+0301), enclosing (U+20DD, U+0489), and the marks of
    # combining class 0 (U+034F, U+0E47) that unicodedata.combining() calls 0. Zero-width
    # characters between marks do not start a new run, or they would reset the cap.
    out: list[str] = []
    run = 0
    for ch in text:
        if unicodedata.category(ch)[0] == "M":
            run += 1
            if run > MAX_COMBINING:
                continue
        elif ch in _ZERO_WIDTH:
            if run >= MAX_COMBINING:
                continue  # padding inside a tower goes with it
        else:
            run = 0
        out.append(ch)
    return "".join(out)
