"""Logging to stderr as text or JSON, with storms of one repeated record cut down and recent errors kept."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["ErrorRing", "JsonFormatter", "RepeatFilter", "setup_logging"]

REPEAT_INTERVAL = 10.0  # seconds: one call site logs at most `REPEAT_BURST` records per interval
REPEAT_BURST = 5
REPEAT_SITES = 1024  # call sites tracked at once; the least recently seen is forgotten first

Key = tuple[object, ...]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            data["suppressed"] = suppressed
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """The plain text line, with a note of how many like it were left out before it."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        suppressed = getattr(record, "suppressed", 0)
        return f"{line} [{suppressed} more like this suppressed]" if suppressed else line


def call_site(record: logging.LogRecord) -> Key:
    """Records are "the same" when one line of code logged them at one level, whatever the arguments."""
    return (record.name, record.levelno, record.pathname, record.lineno)


class _Site:
    __slots__ = ("start", "passed", "suppressed")

    def __init__(self, start: float) -> None:
        self.start, self.passed, self.suppressed = start, 0, 0


class RepeatFilter(logging.Filter):
    """Lets at most `burst` records of one key through per `interval` seconds; drops the rest.

    Meant for storms (asyncio's "socket.accept() out of system resource" under descriptor
    exhaustion, one malformed request after another). The first record let through after a
    suppressed stretch carries `record.suppressed`, the number dropped since the last one passed;
    both formatters here print it. Install it on a handler (`handler.addFilter(RepeatFilter())`),
    so that records propagated from every logger pass it. Only records at `level` (WARNING
    by default) or above are counted; INFO and DEBUG pass as they are. `clock` is for tests.
    """

    def __init__(
        self,
        interval: float = REPEAT_INTERVAL,
        burst: int = REPEAT_BURST,
        *,
        level: int = logging.WARNING,
        key: Callable[[logging.LogRecord], Key] = call_site,
        clock: Callable[[], float] = time.monotonic,
        sites: int = REPEAT_SITES,
    ) -> None:
        super().__init__()
        if interval <= 0 or burst < 1 or sites < 1:
            raise ValueError("RepeatFilter needs interval > 0, burst >= 1 and sites >= 1")
        self.interval, self.burst, self.level, self.key, self.clock, self.sites = interval, burst, level, key, clock, sites
        self._seen: OrderedDict[Key, _Site] = OrderedDict()
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = self.key(record)
        now = self.clock()
        site = self._seen.get(key)
        if site is None:
            site = self._seen[key] = _Site(now)
            if len(self._seen) > self.sites:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
            if now - site.start >= self.interval:
                site.start, site.passed = now, 0
        if site.passed >= self.burst:
            site.suppressed += 1
            self.suppressed_total += 1
            return False
        site.passed += 1
        if site.suppressed:
            record.suppressed = site.suppressed
            site.suppressed = 0
        return True


class ErrorRing(logging.Handler):
    """The last `size` WARNING (and worse) records, for `stranger-bridge status`.

    An entry holds no message text and no ids: the time, the level, the logger, the format string
    of a lazily formatted record (`log.error("room %s: ...", room)` keeps "room %s: ..."), the
    exception type, and how many times in a row it happened.
    """

    def __init__(self, size: int = 20, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.entries: deque[dict[str, object]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        # A record without arguments may have been formatted before logging (an f-string): its text
        # could hold anything, so only templates with their arguments left out are kept.
        template = record.msg if isinstance(record.msg, str) and record.args else None
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        last = self.entries[-1] if self.entries else None
        if last is not None and (last["logger"], last["template"], last["exception"]) == (record.name, template, error):
            last["count"] = int(last["count"]) + 1  # type: ignore[call-overload]
            last["time"] = record.created
            return
        self.entries.append(
            {
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "template": template,
                "exception": error,
                "count": 1,
            }
        )

    def recent(self) -> list[dict[str, object]]:
        """Copies of the entries, oldest first."""
        return [dict(entry) for entry in self.entries]


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Send every log record to stderr in the chosen format, storms cut down. Called by the CLI only."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter (discord.py gateway, nio sync) stays at WARNING unless debugging.
    for noisy in ("discord", "nio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
