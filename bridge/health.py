"""The core's own HTTP listener ([bridge] metrics_bind): /metrics, /healthz and /status for `stranger-bridge status`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

from .address import split_bind
from .metrics import CONTENT_TYPE, Metrics

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0  # seconds a scraper may take to send its request


class HealthServer:
    """Answers GET only. `status()` returns the JSON-ready status; its "health" key decides /healthz."""

    def __init__(self, bind: str, metrics: Metrics, status: Callable[[], dict[str, Any]]) -> None:
        self.host, self.port = split_bind(bind)
        self.metrics = metrics
        self.status = status
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the address is taken (the daemon then fails to start)."""
        from aiohttp import web

        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=READ_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=64)
        await site.start()
        address = self._runner.addresses[0]
        self.port = address[1]
        log.info("health listener on %s:%d (/metrics, /healthz, /status)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = self.metrics.prometheus().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        status = self.status()
        health = status.get("health", "unknown")
        # The first line is the verdict; each further line says why (a platform, a backend, the store).
        text = "\n".join([health, *status.get("problems", [])])
        return web.Response(text=text, status=200 if health == "healthy" else 503, headers={"Cache-Control": "no-store"})

    async def _status(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = json.dumps(self.status(), sort_keys=True, default=str)
        return web.Response(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})
