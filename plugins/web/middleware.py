"""What every request passes: the origin policy, the body cap, error answers and security headers."""

from __future__ import annotations

import ipaddress
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
    "own_origins",
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
# What a browser's cross-site (or same-site) request may reach: the page itself (a link to it is
# fine). Everything else acts or counts against the address (an <img src=/start> on another site
# would spend the visitor's session cap), so it is refused.
CROSS_SITE_OK = frozenset({"/", "/static/app.js", "/static/lines.js", "/static/style.css", "/favicon.ico"})
_DEFAULT_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Every answer's default headers (a handler may set its own variant of one: it is kept).
_DEFAULTS = (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store"))
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps(…) with these, minus an encoder per call


class _Answer(web.Response):
    """A response made by the helpers below: it carries the default headers from the start (one
    mapping built in C, not six look-ups per answer), so the middleware has nothing to add."""

    __slots__ = ()
    secured = True


def _answer(body: str, status: int, content_type: str) -> web.Response:
    return _Answer(text=body, status=status, content_type=content_type, headers=_DEFAULT_HEADERS)


def text(body: str, status: int = 200) -> web.Response:
    return _answer(body, status, "text/plain")


def fail(status: int) -> web.Response:
    return _answer("fail", status, "text/plain")


def json_answer(value: Any) -> web.Response:
    return _answer(_COMPACT(value), 200, "application/json")


def null() -> web.Response:
    return _answer("null", 200, "application/json")


def own_origins(public_origin: str | None, host: str, port: int) -> frozenset[str] | None:
    """The origins of our own page: the configured one, or those of a loopback bind; None when
    neither is known (a public bind without public_origin: the Host header is all there is)."""
    if public_origin is not None:
        return frozenset({public_origin})
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    shown = f"[{host}]" if ":" in host else host
    return frozenset(f"http://{name}:{port}" for name in ("localhost", "127.0.0.1", "[::1]", shown))


def _body_limit(request: web.Request, config: Any) -> int:
    """The largest body a request may carry: a picture upload may carry a picture."""
    if request.path == "/upload" and config.images:
        return max(config.max_body_bytes, config.image_max_bytes)
    return config.max_body_bytes


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return ""


def guard(web_platform: WebPlatform) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware of the platform's application."""
    config = web_platform.config

    def refusal(request: web.Request, origin: str | None) -> str | None:
        """Why a request is refused by the origin policy, or None.

        Omegle-protocol clients send neither Origin nor Sec-Fetch-Site: they are never judged
        here (GET /start works as the protocol says). Browsers send one or both: their request
        must come from our own page (or a configured CORS origin), and, unless it comes from a
        CORS origin, name our own host: a DNS-rebinding page is same-origin with itself, but its
        Host header is the attacker's name."""
        site = request.headers.get("Sec-Fetch-Site")
        cors = origin is not None and origin.lower() in config.cors_origins
        if origin is None and site is None:
            return None
        if site in ("cross-site", "same-site") and not cors and request.path not in CROSS_SITE_OK:
            return "cross_site"
        if cors:
            return None
        own = web_platform.origins
        hosts = web_platform.hosts
        if hosts is not None and request.host.lower() not in hosts:
            return "host"
        if origin is None:
            return None
        # Browsers send `Origin: null` with form posts under our no-referrer policy; the no-JS
        # forms accept it (Sec-Fetch-Site above still refuses other sites' forms): /nojs/send
        # acts only with the secret id, and /nojs/start opens a chat in the sender's own window.
        if origin == "null" and request.path.startswith("/nojs/"):
            return None
        if own is not None:
            return None if origin.lower() in own else "origin"
        return None if _netloc(origin) == request.host.lower() else "origin"

    def screen(request: web.Request) -> web.StreamResponse | None:
        """The answer to a request that is not handed to its handler (refused, too large, a CORS
        preflight), or None."""
        headers = request.headers
        origin = headers.get("Origin")
        # Omegle-protocol clients send neither header: nothing to judge (most requests).
        refused = None if origin is None and "Sec-Fetch-Site" not in headers else refusal(request, origin)
        if refused is not None:
            web_platform.count("refused", refused)
            return fail(403)
        if request.method == "OPTIONS":
            response = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
            return finish(request, response)
        length = request.content_length
        if length is not None and length > config.max_body_bytes and length > _body_limit(request, config):
            web_platform.count("refused", "too_large")
            response = fail(413)
            response.force_close()  # do not read the rest of a huge body
            return finish(request, response)
        return None

    def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """A CORS origin's headers, and the security headers a response does not carry yet."""
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() in config.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        if not getattr(response, "secured", False):  # made elsewhere (a page, a stream, aiohttp's own)
            set_default = response.headers.setdefault
            for name, value in _DEFAULTS:
                set_default(name, value)  # the no-JS pages set a framing-aware variant
        return response

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Origin policy (our own page, plus configured CORS origins), size and error answers,
        security headers on every response. (The coroutine keeps few locals: one is suspended
        in every open long poll.)"""
        response = screen(request)
        if response is not None:
            return response
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
            if exc.status == 408:
                response.force_close()  # the rest of a stalled body is not waited for
        except ProtocolError as exc:
            web_platform.count("refused", "bad_request")
            response = text(f"fail: {exc}", 400)
        return finish(request, response)

    return middleware
