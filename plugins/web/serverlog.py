"""aiohttp's server logger, replaced: request and accept errors counted, logged once per interval, no bytes."""

from __future__ import annotations

import errno
import logging
import sys
import traceback
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from bridge.bucket import TokenBucket
from bridge.metrics import Metrics

__all__ = ["LOG_INTERVAL", "ServerLog"]

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds: at most one line per kind (bad request, server fault) per interval


class ServerLog:
    """Stands in for the `aiohttp.server` logger (RequestHandler's `logger`).

    aiohttp logs a malformed request with its raw bytes (client ids, message text) and one line
    per request. Here every call is counted in `http_errors{reason}` by the error's type; a line
    naming only that type (never its message or the request) is logged at most once per interval.
    Faults of our own handlers are logged at ERROR with their stack but not their message."""

    def __init__(self, metrics: Metrics, platform: str, interval: float = LOG_INTERVAL) -> None:
        self.metrics = metrics
        self.platform = platform
        self._lines = {kind: TokenBucket(1.0 / interval, 1) for kind in ("fault", "request", "exhausted")}
        self._quiet: dict[str, int] = {}  # errors not logged since the last line, per kind

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - the logging.Logger name
        return True

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._note(kwargs.get("exc_info"))

    info = warning = error = debug

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self._note(exc_info)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        self._note(kwargs.get("exc_info"))

    def exhausted(self, exc: OSError) -> None:
        """Accepting paused: descriptors (or buffers) ran out. Counted; logged once per interval."""
        reason = errno.errorcode.get(exc.errno or 0, "OSError")
        self.metrics.inc("http_errors", platform=self.platform, reason=f"accept_{reason}")
        if not self._lines["exhausted"].allow():
            self._quiet["exhausted"] = self._quiet.get("exhausted", 0) + 1
            return
        skipped = self._quiet.pop("exhausted", 0)
        log.error("web: cannot accept connections: %s (accepting pauses; counted in http_errors; %d more since "
                  "the last line)", reason, skipped)

    def _note(self, exc_info: Any) -> None:
        if exc_info is True:
            exc_info = sys.exc_info()[1]
        elif isinstance(exc_info, tuple):
            exc_info = exc_info[1]
        exc = exc_info if isinstance(exc_info, BaseException) else None
        reason = type(exc).__name__ if exc is not None else "server"
        fault = exc is not None and not isinstance(exc, (HttpProcessingError, ConnectionError))
        self.metrics.inc("http_errors", platform=self.platform, reason=reason)
        kind = "fault" if fault else "request"
        if not self._lines[kind].allow():
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        skipped = self._quiet.pop(kind, 0)
        if fault:
            stack = "".join(traceback.format_tb(exc.__traceback__))  # frames only: no message, no data
            log.error("web: %s in a request handler (counted in http_errors; %d more since the last line)\n%s",
                      reason, skipped, stack.rstrip())
        else:
            log.warning("web: refused a malformed request (%s; counted in http_errors; %d more since the last line)",
                        reason, skipped)
