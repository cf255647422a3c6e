"""What every request passes: the origin policy, the body cap, error answers and security headers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from .protocol import ProtocolError

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = [
    "CSP",
    "NOJS_FORM_HEADERS",
    "NOJS_PAGE_CSP",
    "SECURITY_HEADERS",
    "WIN",
    "fail",
    "guard",
    "json_answer",
    "null",
    "text",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The no-JS page frames its own send form (srcdoc, then /nojs/send answers): same origin only.
NOJS_PAGE_CSP = CSP.replace("default-src 'none';", "default-src 'none'; frame-src 'self';")
NOJS_FORM_HEADERS = {
    "Content-Security-Policy": CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'"),
    "X-Frame-Options": "SAMEORIGIN",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
WIN = "win"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/plain")


def fail(status: int) -> web.Response:
    return text("fail", status)


def json_answer(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value, ensure_ascii=False, separators=(",", ":")), content_type="application/json")


def null() -> web.Response:
    return web.Response(text="null", content_type="application/json")


def guard(web_platform: WebPlatform) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware of the platform's application."""
    config = web_platform.config

    def origin_allowed(origin: str, request: web.Request) -> bool:
        if origin.lower() in config.cors_origins:
            return True
        try:
            return urlsplit(origin).netloc.lower() == request.host.lower()
        except ValueError:
            return False

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Origin policy (same origin, plus configured CORS origins), size and error answers,
        security headers on every response."""
        origin = request.headers.get("Origin")
        # Browsers send `Origin: null` with form posts under our no-referrer policy; the no-JS
        # forms accept it: /nojs/send acts only with the secret id, and a forged /nojs/start
        # merely opens a chat in the sender's own window, as a link could.
        allowed = (
            origin is None
            or (origin == "null" and request.path.startswith("/nojs/"))
            or origin_allowed(origin, request)
        )
        if not allowed:
            web_platform.count("refused", "origin")
            response: web.StreamResponse = fail(403)
        elif request.method == "OPTIONS":
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        elif request.content_length is not None and request.content_length > config.max_body_bytes:
            web_platform.count("refused", "too_large")
            response = fail(413)
            response.force_close()  # do not read the rest of a huge body
        else:
            try:
                response = await handler(request)
            except web.HTTPRequestEntityTooLarge:
                web_platform.count("refused", "too_large")
                response = fail(413)
                response.force_close()
            except web.HTTPException as exc:
                if exc.status >= 500:
                    raise
                response = fail(exc.status)
            except ProtocolError as exc:
                web_platform.count("refused", "bad_request")
                response = text(f"fail: {exc}", 400)
        if origin is not None and allowed and origin.lower() in config.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)  # the no-JS pages set a framing-aware variant
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware
