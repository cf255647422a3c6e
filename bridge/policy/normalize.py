"""Text folded for matching: case, look-alike letters, invisible characters, spacing tricks, leetspeak."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ASCII_FOLD", "MAX_RUN", "fold", "fold_spans", "joined_runs", "tokens"]

# Look-alikes of Latin letters that NFKD leaves alone (NFKD already maps fullwidth forms,
# mathematical alphanumerics, circled and superscript letters). Both cases are listed because
# some capitals and their small letters look like different Latin letters (Greek Η is H, η is n).
_LOOKALIKES = {
    # Cyrillic
    "А": "a", "а": "a", "В": "b", "в": "b", "Е": "e", "е": "e", "К": "k", "к": "k", "М": "m",
    "м": "m", "Н": "h", "н": "h", "О": "o", "о": "o", "Р": "p", "р": "p", "С": "c", "с": "c",
    "Т": "t", "т": "t", "У": "y", "у": "y", "Х": "x", "х": "x", "Ѕ": "s", "ѕ": "s", "І": "i",
    "і": "i", "Ј": "j", "ј": "j", "Һ": "h", "һ": "h", "Ԁ": "d", "ԁ": "d", "Ԛ": "q", "ԛ": "q",
    "Ԝ": "w", "ԝ": "w", "Ү": "y", "ү": "y", "Ӏ": "l", "ӏ": "l", "п": "n", "г": "r", "Ь": "b",
    # Greek
    "Α": "a", "α": "a", "Β": "b", "β": "b", "Ε": "e", "ε": "e", "Ζ": "z", "Η": "h", "η": "n",
    "Ι": "i", "ι": "i", "Κ": "k", "κ": "k", "Μ": "m", "Ν": "n", "ν": "v", "Ο": "o", "ο": "o",
    "Ρ": "p", "ρ": "p", "Τ": "t", "τ": "t", "Υ": "y", "υ": "u", "Χ": "x", "χ": "x", "ω": "w",
    "ϲ": "c", "ς": "c", "ϳ": "j",  # NFKD turns lunate sigma ϲ into final sigma ς
    # Armenian
    "օ": "o", "Օ": "o", "ս": "u", "Ս": "u", "ո": "n", "հ": "h", "ց": "g", "զ": "q", "ա": "w",
    # Latin letters that are not decomposed: dotless, barred, small capitals
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d",
    "ħ": "h", "ł": "l", "Ł": "l", "ƅ": "b", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e",
    "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o",
    "ᴘ": "p", "ʀ": "r", "ꜰ": "f", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
}  # fmt: skip
# Regional indicator symbols (flag letters) read as A-Z.
_LOOKALIKES.update({chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)})
# Simple leetspeak. "1" is read as "i"; word lists also match the "l" reading (see rules.py).
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
# Invisible letters (category Lo, so not caught as format characters): Hangul fillers.
_INVISIBLE = "\u115f\u1160\u3164\uffa0"


def _drop_table() -> dict[int, None]:
    # Combining marks (so "fück" reads "fuck" after NFKD) and format characters (zero-width
    # space and joiners, bidi controls, soft hyphen, tag characters).
    cat = unicodedata.category
    ranges = (range(0xA0, 0x20000), range(0xE0000, 0xE1000))
    drop: dict[int, None] = {c: None for r in ranges for c in r if cat(chr(c))[0] == "M" or cat(chr(c)) == "Cf"}
    drop.update({ord(c): None for c in _INVISIBLE})
    return drop


_TABLE: dict[int, str | None] = {**_drop_table(), **str.maketrans({**_LOOKALIKES, **_LEET})}
# The ASCII fast path does the same in one bytes.translate: lower case, leetspeak, and every
# other non-alphanumeric byte becomes a space (a separator). The tokens of ASCII text are
# text.encode("ascii").translate(ASCII_FOLD).decode("ascii").split().
ASCII_FOLD = _ASCII = bytes(
    ord(_LEET.get(chr(b), chr(b).lower())) if chr(b).isalnum() or chr(b) in _LEET else 0x20 for b in range(128)
) + b" " * 128
_SEPARATORS = re.compile(r"[\W_]+")
_SEPARATOR = re.compile(r"[\W_]")
_WORD = re.compile(r"[^ ]+")
MAX_RUN = 40  # single-letter tokens joined at most ("f u c k"): bounds the work on "a a a a ..."


def _fold_unicode(text: str) -> str:
    # Translated again after casefold: a capital missing from the table may fold to a listed
    # small letter, and casefold itself can produce marks. Not needed (and half the cost of a
    # French line) when casefold changed nothing or left only ASCII: what the table makes is
    # no key of it (ASCII letters; the leet characters are gone after the first pass), and it
    # changes no ASCII letter.
    once = unicodedata.normalize("NFKD", text).translate(_TABLE)
    folded = once.casefold()
    return folded if folded.isascii() or folded == once else folded.translate(_TABLE)


def tokens(text: str) -> list[str]:
    """The words of `text` after folding, in order; separators are gone."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII).decode("ascii").split()
    folded = _fold_unicode(text)
    return [t for t in _SEPARATORS.split(folded) if t]


def fold(text: str) -> str:
    """`text` folded for matching: its tokens joined by single spaces."""
    return " ".join(tokens(text))


def fold_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The tokens of `text` (the same as `tokens`) and the span of each in `text`.

    Slower for non-ASCII text (one step per character); used only to mask what a fast check
    already found.
    """
    if text.isascii():  # one byte in, one byte out: the spans are those of the translated text
        folded = text.encode("ascii").translate(_ASCII).decode("ascii")
        found = [(m.group(), m.span()) for m in _WORD.finditer(folded)]
        return [w for w, _ in found], [span for _, span in found]
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    current: list[str] = []
    start = end = 0
    for i, ch in enumerate(text):
        if ch.isascii():
            piece = chr(_ASCII[ord(ch)])
        else:
            piece = _fold_unicode(ch)
        for c in piece:
            if c == " " or _SEPARATOR.match(c):
                if current:
                    out.append("".join(current))
                    spans.append((start, end))
                    current = []
            else:
                if not current:
                    start = i
                current.append(c)
                end = i + 1
    if current:
        out.append("".join(current))
        spans.append((start, end))
    return out, spans


def joined_runs(words: list[str]) -> list[tuple[int, str]]:
    """Each run of two or more single-letter tokens ("f u c k", "f.u.c.k") as (index of its first token, joined)."""
    runs: list[tuple[int, str]] = []
    first = -1
    for i, word in enumerate(words):
        if len(word) == 1:
            if first < 0:
                first = i
            if i - first + 1 >= MAX_RUN:
                runs.append((first, "".join(words[first : i + 1])))
                first = -1
            continue
        if first >= 0 and i - first >= 2:
            runs.append((first, "".join(words[first:i])))
        first = -1
    if first >= 0 and len(words) - first >= 2:
        runs.append((first, "".join(words[first:])))
    return runs
