"""Durations as operators write them ("90s", "1h", "7d", "1h30m") and as users read them."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds, or parts such as "1h30m" (s, m, h, d, w)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _PART.sub("", text) == "":
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        else:
            raise ValueError(f"not a duration: {value!r} (write seconds or e.g. 90s, 15m, 1h, 7d, 1h30m)")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """`seconds` in at most two units a person reads at a glance ("3 h 20 min", "45 s", "2 d 4 h")."""
    seconds = max(0, int(seconds + 0.999))  # a remaining "0.4 s" still reads "1 s", never "0 s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    if not parts:
        return "0 s"
    shown = [f"{n} {unit}" for n, unit in parts[:2] if n]
    return " ".join(shown)
