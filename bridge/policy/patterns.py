"""Operator regexes: refused when they can backtrack catastrophically, and run on bounded windows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

try:  # Python 3.11+ names the parser module privately; sre_parse is its deprecated alias
    import re._constants as _c
    import re._parser as _parser
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_UNBOUNDED",
    "SCAN_OVERLAP",
    "SCAN_WINDOW",
    "UnsafePattern",
    "anchored_prefix",
    "check_pattern",
    "compile_patterns",
    "scan",
]

MAX_PATTERN_LENGTH = 200
MAX_UNBOUNDED = 2  # `*`, `+`, `{n,}` per pattern: k of them cost up to window**k steps
MAX_COUNT = 1000  # the largest `{m,n}` count accepted
SCAN_WINDOW = 512  # characters one search sees at most
SCAN_OVERLAP = 64  # a match up to this long is found even across a window edge

_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)}
_ANY = None  # "could start with any character" in first-character sets


class UnsafePattern(ValueError):
    """An operator pattern refused at config time; the message names the pattern and why."""


# The config checks each pattern when it is loaded and the rules again when they are compiled
# (per platform, per guild layer, on every admin change): the parse is remembered.
@lru_cache(maxsize=4096)
def check_pattern(pattern: str) -> None:
    """Raise UnsafePattern if `pattern` is invalid, overlong, or can take exponential time."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePattern(f"pattern {pattern[:40]!r}…: longer than {MAX_PATTERN_LENGTH} characters")
    try:
        re.compile(pattern)
        tree = _parser.parse(pattern)
    except re.error as exc:
        raise UnsafePattern(f"pattern {pattern!r}: not a valid regex ({exc})") from None
    if tree.state.flags & ~re.UNICODE:
        # They would apply to every other pattern of the list (and Python refuses them mid-way).
        raise UnsafePattern(f"pattern {pattern!r}: global inline flags are refused; use a scoped group such as (?s:...)")
    problem = _problem(list(tree), inside_repeat=False)
    if problem is None and _costly_unbounded(list(tree)) > MAX_UNBOUNDED:
        problem = f"more than {MAX_UNBOUNDED} unbounded repeats (*, +, {{n,}}) that can match the same text"
    if problem:
        raise UnsafePattern(f"pattern {pattern!r}: refused, {problem}")


def _problem(items: list, inside_repeat: bool) -> str | None:
    for op, av in items:
        if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            return "backreferences can take exponential time"
        if op in _REPEATS:
            low, high, body = av
            if high != _c.MAXREPEAT and high > MAX_COUNT:
                return f"a repeat count above {MAX_COUNT}"
            varies = high != low
            if inside_repeat and varies:
                return "a nested quantifier (like (a+)+) can take exponential time"
            if (problem := _problem(list(body), inside_repeat or high > 1)) is not None:
                return problem
            if high > 1 and _nullable(list(body)):
                return "a repeat of something that can match nothing (like (|a)*) can take exponential time"
        elif op is _c.BRANCH:
            branches = [list(b) for b in av[1]]
            if inside_repeat and _overlapping(branches):
                return "alternatives that can match the same text inside a repeat (like (a|a)*) can take exponential time"
            for branch in branches:
                if (problem := _problem(branch, inside_repeat)) is not None:
                    return problem
        elif op is _c.SUBPATTERN:
            if (problem := _problem(list(av[3]), inside_repeat)) is not None:
                return problem
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            if (problem := _problem(list(av[1]), inside_repeat)) is not None:
                return problem
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            if (problem := _problem(list(av), inside_repeat)) is not None:
                return problem
    return None


def _costly_unbounded(items: list) -> int:
    """Unbounded repeats that can compete for the same characters (k of them: up to n**k steps).

    A repeat of one literal character (`k+y+s+`) competes only with repeats of that same
    character; a repeat of a class or `.` competes with anything.
    """
    firsts: list[set[int] | None] = []
    _unbounded_firsts(items, firsts)
    broad = sum(1 for f in firsts if f is None or len(f) > 1)
    literals: dict[int, int] = {}
    for f in firsts:
        if f is not None and len(f) == 1:
            (char,) = f
            literals[char] = literals.get(char, 0) + 1
    return broad + sum(n for n in literals.values() if n > 1 or broad)


def _unbounded_firsts(items: list, out: list[set[int] | None]) -> None:
    for op, av in items:
        if op in _REPEATS:
            if av[1] == _c.MAXREPEAT:
                out.append(_first(list(av[2])))
            _unbounded_firsts(list(av[2]), out)
        elif op is _c.BRANCH:
            for branch in av[1]:
                _unbounded_firsts(list(branch), out)
        elif op is _c.SUBPATTERN:
            _unbounded_firsts(list(av[3]), out)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _unbounded_firsts(list(av[1]), out)
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            _unbounded_firsts(list(av), out)


def _nullable(items: list) -> bool:
    """Whether the sequence can match the empty string (conservatively: True when unsure)."""
    for op, av in items:
        if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
            continue
        if op in _REPEATS:
            if av[0] > 0 and not _nullable(list(av[2])):
                return False
            continue
        if op is _c.SUBPATTERN:
            if not _nullable(list(av[3])):
                return False
            continue
        if op is _c.BRANCH:
            if not any(_nullable(list(b)) for b in av[1]):
                return False
            continue
        return False  # a literal, a class, ANY: at least one character
    return True


def _first(items: list) -> set[int] | None:
    """The characters a match of the sequence can start with; None for "any" or unknown."""
    chars: set[int] = set()
    for op, av in items:
        if op is _c.LITERAL:
            return chars | {av}
        if op is _c.IN:
            members = _class_members(av)
            return None if members is None else chars | members
        if op is _c.AT:
            continue
        if op in _REPEATS or op is _c.SUBPATTERN or op is _c.BRANCH:
            if op in _REPEATS:
                body, may_skip = list(av[2]), av[0] == 0
            elif op is _c.SUBPATTERN:
                body, may_skip = list(av[3]), False
            else:
                body, may_skip = None, False
            if body is None:
                parts = [_first(list(b)) for b in av[1]]
                if any(p is None for p in parts):
                    return None
                chars |= set().union(*parts)
                may_skip = any(_nullable(list(b)) for b in av[1])
            else:
                got = _first(body)
                if got is None:
                    return None
                chars |= got
                may_skip = may_skip or _nullable(body)
            if not may_skip:
                return chars
            continue
        return None
    return chars


def _class_members(av: list) -> set[int] | None:
    members: set[int] = set()
    for op, value in av:
        if op is _c.LITERAL:
            members.add(value)
        elif op is _c.RANGE and value[1] - value[0] < 256:
            members.update(range(value[0], value[1] + 1))
        else:
            return None  # negation, categories (\w, \d), wide ranges: treat as "anything"
    return members


def _overlapping(branches: list[list]) -> bool:
    seen: set[int] = set()
    for branch in branches:
        if _nullable(branch):
            return True
        first = _first(branch)
        if first is None or first & seen:
            return True
        seen |= first
    return False


@lru_cache(maxsize=4096)
def anchored_prefix(pattern: str, limit: int = 3) -> str | None:
    """The first letters (at most `limit`) of every match of a pattern that starts at a word
    boundary with literal letters (`\\bfoo...`, `\\bk+ys`), or None for any other pattern.

    On folded text (tokens of letters and digits joined by single spaces) such a pattern can
    only match where a token starts with that prefix, so it need not run on other messages.
    """
    items = list(_parser.parse(pattern))
    if not items or items[0] != (_c.AT, _c.AT_BOUNDARY):
        return None
    prefix = ""
    for op, av in items[1:]:
        if len(prefix) >= limit:
            break
        if op is _c.LITERAL and chr(av).isalnum():
            prefix += chr(av)
            continue
        if op in _REPEATS and av[0] >= 1 and len(av[2]) == 1 and av[2][0][0] is _c.LITERAL and chr(av[2][0][1]).isalnum():
            prefix += chr(av[2][0][1])  # `k+`: at least one k, then more k or something else
        break
    return prefix[:limit] or None


def compile_patterns(patterns: list[str]) -> re.Pattern[str] | None:
    """One compiled alternation of `patterns` (each checked first); None when there are none."""
    for pattern in patterns:
        check_pattern(pattern)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def scan(regex: re.Pattern[str], text: str) -> Iterator[tuple[int, int]]:
    """Spans of `regex` matches in `text`, searching windows of SCAN_WINDOW characters.

    Windows overlap by SCAN_OVERLAP, so a search never sees more than SCAN_WINDOW characters
    (which bounds the cost of the patterns check_pattern lets through) and a match up to
    SCAN_OVERLAP long is never missed at an edge. Spans are in `text`, in order, without repeats.
    """
    size = len(text)
    start = 0
    last_end = -1
    while True:
        stop = min(size, start + SCAN_WINDOW)
        if stop < size:
            # End a window at a space where there is one, so \b and $ at its edge tell the truth.
            space = text.rfind(" ", start + SCAN_OVERLAP + 1, stop)  # past the overlap: progress
            stop = space if space > 0 else stop
        for m in regex.finditer(text, start, stop):
            a, b = m.span()
            if a >= last_end and b > a:
                yield a, b
                last_end = b
        if stop >= size:
            return
        start = stop - SCAN_OVERLAP
