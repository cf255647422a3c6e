"""/healthz and /metrics of the web server: the core's figures plus this server's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .middleware import text

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["Health"]

_LABELS = {"refused": "reason", "expired": "reason", "started": "mode"}


class Health:
    """Liveness and Prometheus text for the platform."""

    def __init__(self, platform: WebPlatform) -> None:
        self.web = platform

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/healthz", self.on_healthz)
        router.add_get("/metrics", self.on_metrics)

    async def on_healthz(self, request: web.Request) -> web.Response:
        closing = self.web.closing
        return text("closing" if closing else "ok", 503 if closing else 200)

    async def on_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text: the core's figures plus this server's own."""
        platform, name = self.web, self.web.name
        lines = [
            platform.metrics.prometheus().rstrip("\n"),
            "# TYPE stranger_bridge_web_clients gauge",
            f'stranger_bridge_web_clients{{platform="{name}"}} {len(platform.clients)}',
            "# TYPE stranger_bridge_web_polls_open gauge",
            f'stranger_bridge_web_polls_open{{platform="{name}"}} {sum(platform.clients.polls.values())}',
        ]
        counters = platform.counters
        for counter in sorted({n for n, _ in counters}):
            lines.append(f"# TYPE stranger_bridge_web_{counter}_total counter")
            for (n, label), value in sorted(counters.items()):
                if n == counter:
                    lines.append(
                        f'stranger_bridge_web_{counter}_total{{platform="{name}",{_LABELS[counter]}="{label}"}} {value}'
                    )
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")
