"""Durations as operators write them and as users read them: table tests."""

import pytest

from bridge.policy.timespan import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("7d", 604800.0),
     ("1w", 604800.0), ("1h30m", 5400.0), ("1H 30M", 5400.0), ("0", 0.0), ("2.5h", 9000.0)],
)  # fmt: skip
def test_parse(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "1y", "h", "-5", -5, "1h-30m", True, float("inf"), float("nan")])
def test_parse_refuses(value):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.2, "1 s"), (45, "45 s"), (60, "1 min"), (3599.5, "1 h"), (12000, "3 h 20 min"),
     (86400, "1 d"), (187200, "2 d 4 h"), (90061, "1 d 1 h"), (-3, "0 s")],
)  # fmt: skip
def test_format(seconds, text):
    assert format_duration(seconds) == text
