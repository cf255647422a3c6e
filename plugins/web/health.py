"""/healthz and /metrics of the web server, and the server's own gauges in the core's metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bridge.metrics import CONTENT_TYPE

from .middleware import text

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["Health"]


class Health:
    """Liveness, and the server's figures in the core's metrics (served here and by the core)."""

    def __init__(self, platform: WebPlatform) -> None:
        self.web = platform

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/healthz", self.on_healthz)
        router.add_get("/metrics", self.on_metrics)

    def add_gauges(self) -> None:
        """web_clients, web_polls_open and web_connections, read at each scrape."""
        platform = self.web
        name = (platform.name,)
        metrics = platform.metrics
        metrics.gauge_source("web_clients", ("platform",), lambda: {name: len(platform.clients)})
        metrics.gauge_source("web_polls_open", ("platform",), lambda: {name: sum(platform.clients.polls.values())})
        metrics.gauge_source(
            "web_connections", ("platform",), lambda: {name: platform.gate.count if platform.gate else 0}
        )

    async def on_healthz(self, request: web.Request) -> web.Response:
        closing = self.web.closing
        return text("closing" if closing else "ok", 503 if closing else 200)

    async def on_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text of every figure: the core's and this server's."""
        body = self.web.metrics.prometheus().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
