"""The page's rich-relay endpoints: /edit, /delete and /react, and the ref and reply of its /send."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bridge.events import Edit, Event, Message, Reaction, Retract

from .clients import Client
from .middleware import WIN, fail, text
from .rich import RichError

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["MAX_TEXT", "RichApi", "message_from"]

MAX_TEXT = 4000  # characters of a message or an edit (the page's own limit; the core's default)


def _text(form: dict[str, str]) -> str:
    value = form.get("msg")
    if value is None or not value.strip():
        raise RichError(400, "msg is missing")
    if len(value) > MAX_TEXT:
        raise RichError(413, f"msg is longer than {MAX_TEXT} characters")
    return value


def message_from(client: Client, form: dict[str, str]) -> Message:
    """The Message a /send makes: with `ref` (the page's id of the new line) and `reply` (the
    line it answers) from a rich client; plain text from any other. Raises RichError."""
    text_ = form.get("msg")
    if text_ is None:
        raise RichError(400, "msg is missing")
    ref, reply = form.get("ref"), form.get("reply")
    if not client.rich or (ref is None and not reply):
        return Message(text_)
    if len(text_) > MAX_TEXT:
        raise RichError(413, f"msg is longer than {MAX_TEXT} characters")
    book = client.lines()
    reply_to = book.reply_target(reply)
    if ref is not None:
        book.own_line(ref)
    return Message(text_, ref=ref, reply_to=reply_to)


class RichApi:
    """The extension's handlers; only clients that started with `rich=1` may use them."""

    def __init__(self, platform: WebPlatform) -> None:
        self.web = platform

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/edit", self.on_edit)
        router.add_post("/delete", self.on_delete)
        router.add_post("/react", self.on_react)

    async def _client(self, request: web.Request) -> tuple[Client, dict[str, str]]:
        client, form = await self.web.find_client(request)
        if client is None or client.ended or not client.rich or client.nojs or client.spy:
            raise RichError(400, "not a chat that can do this")
        return client, form

    async def on_edit(self, request: web.Request) -> web.Response:
        """POST /edit: id, ref (one of the client's own lines), msg (its new text)."""
        try:
            client, form = await self._client(request)
            new = _text(form)
            client.lines().edit(form.get("ref"))
        except RichError as exc:
            return self.refuse(exc)
        return self.act(client, Edit(form["ref"], new))

    async def on_delete(self, request: web.Request) -> web.Response:
        """POST /delete: id, ref (one of the client's own lines)."""
        try:
            client, form = await self._client(request)
            client.lines().retract(form.get("ref"))
        except RichError as exc:
            return self.refuse(exc)
        return self.act(client, Retract(form["ref"]))

    async def on_react(self, request: web.Request) -> web.Response:
        """POST /react: id, ref (any line of the chat), emoji (of the page's set), add=1|0."""
        try:
            client, form = await self._client(request)
            add = form.get("add", "1")
            if add not in ("0", "1"):
                raise RichError(400, "add must be 0 or 1")
            changed = client.lines().react(form.get("ref"), form.get("emoji"), add == "1")
        except RichError as exc:
            return self.refuse(exc)
        if not changed:
            return text(WIN)  # already so: nothing to relay
        return self.act(client, Reaction(form["ref"], form["emoji"], add == "1"))

    def refuse(self, exc: RichError) -> web.Response:
        self.web.count("refused", "rich_throttled" if exc.status == 429 else "bad_request")
        return text(f"fail: {exc}", exc.status)

    def act(self, client: Client, event: Event) -> web.Response:
        client.answered = True
        if not self.web.submit(self.web.room(client), event):
            self.web.count("refused", "core")
            return fail(503)
        return text(WIN)
