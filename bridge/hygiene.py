"""Plain-text hygiene shared by every platform: strip what can hide, spoof or crash, cap what can flood."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "cut", "split"]

# Bidi embeddings/overrides/isolates and the BOM: they reorder or hide text around them.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\ufeff"
# C0/C1 controls except tab and newline; DEL.
_CONTROL = "".join(chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127, *range(128, 160)])
_STRIP = str.maketrans("", "", _BIDI + _CONTROL)
_ZERO_WIDTH_RUN = re.compile("[\u200b\u200c\u200d\u2060\u180e]{2,}")
_BLANK_LINES = re.compile("\n{4,}")
MAX_COMBINING = 3  # per base character: enough for real scripts, not for "zalgo" towers
CUT_MARKER = " […]"


def clean(text: str, limit: int | None = None) -> str:
    """Return `text` without controls, bidi overrides, lone surrogates or combining towers.

    Called on every message in both directions before a platform renders it. With `limit`,
    the result is cut to at most that many characters, ending with a visible marker.
    """
    if not text.isascii():
        # Lone surrogates cannot be encoded anywhere downstream; replace instead of crashing.
        text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(text) else text
        text = _cap_combining(text)
        text = _ZERO_WIDTH_RUN.sub("\u200b", text)
    text = text.translate(_STRIP).replace("\r\n", "\n").replace("\r", "\n")
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


def _cap_combining(text: str) -> str:
    out: list[str] = []
    run = 0
    for ch in text:
        if unicodedata.combining(ch):
            run += 1
            if run > MAX_COMBINING:
                continue
        else:
            run = 0
        out.append(ch)
    return "".join(out)
