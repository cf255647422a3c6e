"""Links and Discord invites in message text: found near their marks only, and defanged to a fixed point."""

from __future__ import annotations

import re

from .normalize import tokens

__all__ = ["FORMAT", "INVITE", "URL", "defang", "find_link", "first_link"]

_TLDS = (
    r"(?:com|net|org|io|gg|me|co|uk|de|ru|info|xyz|app|dev|tv|ly|be|link|site|online|top|club|live|gl|to"
    r"|cc|us|biz|fr|nl|eu|ca|tk|ml|ga|cf|gq|ws|su|fun|icu|vip|pro|page|sh|fm|im|is|ai|shop|store|tech)"
)
URL = re.compile(
    r"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>]+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}" + _TLDS + r"\b(?:/[^\s<>]*)?"
)
# What every URL match without a scheme holds: a dot after "www" or before a top-level domain
# that ends a word (under the pattern's own flags). Most dots in chat are in neither ("3.5",
# "e.g.", "12.30", "...") and cost the pattern a backtracking search per label; written dot
# first, so the engine's literal search finds the candidates.
_DOMAIN_DOT = re.compile(r"(?i)\.(?:(?<=www\.)|" + _TLDS + r"\b)")
# Invites after folding and joining every token, so "disc0rd . gg / x" and "d i s c o r d.gg/x" count.
INVITE = re.compile(r"discord(?:app)?(?:gg|cominvite)[a-z0-9]")
FORMAT = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"))
# The first look: no text is taken for one with a link without one of these (a letter or digit,
# a dot, a letter or digit; or "://"). Written dot first: the engine's literal search finds the candidates.
_MAYBE_LINK = re.compile(r"\.(?<=[^\W_]\.)(?=[^\W_])|://")
# What every URL match holds: "://" (a scheme) or a dot right after a letter or digit (the first
# label's, or www's), at most _LABEL characters after the match's start; and a match holds no space.
_MARK = re.compile(r"\.(?<=[^\W_]\.)|://")
_LABEL = 63
# A scheme as the link pattern sees one (at a word start): anywhere in a link, its path too.
_SCHEME = re.compile(r"(?i)\b(?:(h)tt(ps?)|(f)t(p))://")


def find_link(text: str) -> re.Match[str] | None:
    """The first link in `text` (format characters already dropped) when the first look takes
    it for a text with one (a letter or digit, a dot, a letter or digit; or "://"), else None:
    the first mark found once serves both, since whatever the first look wants is a mark too."""
    schemes = "://" in text
    if not schemes and _DOMAIN_DOT.search(text) is None:
        return None  # no match of the link pattern can be in it
    at = text.find(".")
    if schemes or at <= 0 or not text[at - 1].isalnum():  # not the common case: a first dot after a letter
        at = _next_mark(text, 0, schemes)
        if at < 0:
            return None
    # [^\W_] is str.isalnum: the first look wants "://" or a dot between two letters or digits.
    if text[at] != ":" and not text[at + 1 : at + 2].isalnum() and _MAYBE_LINK.search(text, at + 1) is None:
        return None
    # The first stretch of first_link(text, 0, at), written out: most texts with a link end here.
    low = text.rfind(" ", 0, at) + 1
    if low < at - _LABEL:
        low = at - _LABEL
    high = text.find(" ", at)
    found = URL.search(text, low) if high < 0 else URL.search(text, low, high)
    if found is not None or high < 0:
        return found
    return first_link(text, high)


def _next_mark(text: str, pos: int, schemes: bool) -> int:
    """Where the first mark at or after `pos` is (-1: none); `schemes`: whether "://" is in `text`."""
    if schemes:
        mark = _MARK.search(text, pos)
        return -1 if mark is None else mark.start()
    at = text.find(".", pos)  # no "://": a mark is a dot right after a letter or digit, mostly the first dot
    for _ in range(4):
        if at < 0 or (at > 0 and text[at - 1].isalnum()):
            return at
        at = text.find(".", at + 1)
    mark = _MARK.search(text, at) if at >= 0 else None  # dots after dots or spaces: the engine walks on
    return -1 if mark is None else mark.start()


def first_link(text: str, pos: int = 0, at: int = -1) -> re.Match[str] | None:
    """The match `URL.search(text, pos)` finds, searched only near the marks a link must hold
    (`at`: where the first one at or after `pos` is, when the caller has found it).

    The link pattern starts at every word boundary (a few µs on a chat line); here it runs only on
    the stretch around each mark: from the mark back to the earlier of a space and _LABEL
    characters, forward to the next space. A match holds its mark and no space, so none is
    missed, and the pattern sees the same characters (a space ends a match as the end of the
    stretch does), so each is found with the same span.
    """
    schemes = "://" in text
    while True:
        if at < 0:
            at = _next_mark(text, pos, schemes)
            if at < 0:
                return None
        low = text.rfind(" ", pos, at) + 1
        if low < pos:
            low = pos
        if low < at - _LABEL:
            low = at - _LABEL
        high = text.find(" ", at)
        found = URL.search(text, low) if high < 0 else URL.search(text, low, high)
        if found is not None or high < 0:
            return found
        pos, at = high, -1  # no match starts before the space: the next one holds a later mark


def defang(text: str, *, invites_only: bool = False, first: re.Match[str] | None = None) -> str:
    """Every link (or every Discord invite) in `text` made unclickable but readable:
    hxxps://example[.]com/a[.]html. A fixed point: defanging the result changes nothing, and no
    link is left in it (so the receiver's check of a relayed message finds the sender's verdict).
    `first`: the first link in `text` (format characters dropped), when the caller has found it."""
    out = text if text.isascii() else text.translate(FORMAT)  # no format character is ASCII
    if first is not None and not invites_only and "://" not in out:
        start, end = first.span()
        if out.count(".") == out.count(".", start, end):
            # The one round written out: every dot is in this link, so no other link (each holds a
            # mark) and, once they are bracketed, no mark at all: the fixed point. Bracketing the
            # link's dots is then bracketing every dot.
            return out.replace(".", "[.]")
    one = _defang_invite if invites_only else _defang_one
    # Most texts take one round. Another is needed only when bracketing a dot lets a shorter link
    # show (a chain of more labels than a link's 8); each round brackets a dot or renames a
    # scheme and never undoes one, so the rounds end.
    while True:
        match = first_link(out) if first is None else first
        first = None
        if match is None:
            return out
        pieces, last = [], 0
        while match is not None:  # what URL.sub would replace: its matches are never empty
            pieces += (out[last : match.start()], one(match))
            last = match.end()
            # A later link holds a mark, so a dot or "://": mostly there is none after the last link.
            match = first_link(out, last) if out.find(".", last) >= 0 or out.find("://", last) >= 0 else None
        pieces.append(out[last:])
        new = "".join(pieces)
        if new == out:
            return out
        if "://" not in new and new.count(".") == new.count("[.]"):
            return new  # every dot bracketed, no scheme: no mark, so no link is left
        out = new


def _defang_invite(match: re.Match[str]) -> str:
    return _defang_one(match) if INVITE.search("".join(tokens(match.group(0)))) else match.group(0)


def _defang_one(match: re.Match[str]) -> str:
    # The whole link, its path too: a path may hold what reads as a link of its own ("/x.com").
    url = match.group(0)
    return (_SCHEME.sub(_scheme, url) if "://" in url else url).replace(".", "[.]")


def _scheme(match: re.Match[str]) -> str:
    # hxxp, hxxps, fxp (the usual unclickable spellings); the letters keep their case.
    return (match[1] + "xx" + match[2] if match[1] else match[3] + "x" + match[4]) + "://"
