"""The page's rich-relay endpoints: /edit, /delete, /react and /upload, and the ref and reply of its /send."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.config import ImageLimits
from bridge.events import Edit, Event, Image, Message, Reaction, Retract
from bridge.images import ImageRefused, prepare

from .clients import Client
from .middleware import WIN, fail, json_answer, text
from .rich import RichError

if TYPE_CHECKING:
    from .platform import WebPlatform

__all__ = ["MAX_TEXT", "RichApi", "UPLOAD", "message_from"]

MAX_TEXT = 4000  # characters of a message or an edit (the page's own limit; the core's default)
UPLOAD = "/upload"  # the page's picture upload: the raw file as the body, the id in a header (never a URL)


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
        self.uploading: set[str] = set()  # clients with an upload being decoded (one at a time each)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/edit", self.on_edit)
        router.add_post("/delete", self.on_delete)
        router.add_post("/react", self.on_react)
        router.add_post(UPLOAD, self.on_upload)

    async def on_edit(self, request: web.Request) -> web.Response:
        """POST /edit: id, ref (one of the client's own lines), msg (its new text)."""
        return await self._action(request, self.edit)

    async def on_delete(self, request: web.Request) -> web.Response:
        """POST /delete: id, ref (one of the client's own lines)."""
        return await self._action(request, self.delete)

    async def on_react(self, request: web.Request) -> web.Response:
        """POST /react: id, ref (any line of the chat), emoji (of the page's set), add=1|0."""
        return await self._action(request, self.react)

    async def _action(self, request: web.Request, action: Callable[[Client | None, dict[str, str]], web.Response]) -> web.Response:
        client, form = await self.web.find_client(request)
        return action(client, form)

    @property
    def actions(self) -> dict[str, Callable[[Client | None, dict[str, str]], web.Response]]:
        """The endpoints by path, each taking the client and its form (see OmegleApi.actions)."""
        return {"/edit": self.edit, "/delete": self.delete, "/react": self.react}

    @staticmethod
    def _check(client: Client | None) -> Client:
        if client is None or client.ended or not client.rich or client.nojs or client.spy:
            raise RichError(400, "not a chat that can do this")
        return client

    def edit(self, client: Client | None, form: dict[str, str]) -> web.Response:
        try:
            client = self._check(client)
            new = _text(form)
            client.lines().edit(form.get("ref"))
        except RichError as exc:
            return self.refuse(exc)
        return self.act(client, Edit(form["ref"], new))

    def delete(self, client: Client | None, form: dict[str, str]) -> web.Response:
        try:
            client = self._check(client)
            client.lines().retract(form.get("ref"))
        except RichError as exc:
            return self.refuse(exc)
        self.web.clients.pictures.drop_line(client.key, form["ref"])  # the sender's own view of it too
        return self.act(client, Retract(form["ref"]))

    def react(self, client: Client | None, form: dict[str, str]) -> web.Response:
        try:
            client = self._check(client)
            add = form.get("add", "1")
            if add not in ("0", "1"):
                raise RichError(400, "add must be 0 or 1")
            changed = client.lines().react(form.get("ref"), form.get("emoji"), add == "1")
        except RichError as exc:
            return self.refuse(exc)
        if not changed:
            return text(WIN)  # already so: nothing to relay
        return self.act(client, Reaction(form["ref"], form["emoji"], add == "1"))

    async def on_upload(self, request: web.Request) -> web.Response:
        """POST /upload (pictures on): headers X-Client-ID (the id) and X-Ref (the new line's id
        `uN`), the file as the body, at most image_max_bytes. The core's bridge.images decodes and
        re-encodes it (metadata stripped, bombs and other kinds refused); answers the picture as
        it will be shown {url, width, height}, or `415 fail: <why>` for a file that is not sent.
        In Redis mode a client another instance owns has its picture read here and sent there."""
        platform, config = self.web, self.web.config
        if not config.images:
            return fail(404)
        client = platform.clients.find(request.headers.get("X-Client-ID"))
        if client is None and platform.shared_api is not None:
            return await self.upload_elsewhere(request)
        if client is None or client.ended or not client.rich or client.nojs or client.spy:
            platform.count("refused", "unknown_id")
            return fail(400)
        ref = request.headers.get("X-Ref", "")
        image = await self.read_picture(request, client.key, lambda: client.lines().own_line(ref))
        if not isinstance(image, Image):
            return image
        answer = self.upload(client, ref, image, named=True)
        if platform.shared_api is not None:
            await platform.clients.pictures.written(client.key)  # its URL answers on every instance
        return answer

    async def upload_elsewhere(self, request: web.Request) -> web.Response:
        """POST /upload of a client another instance owns: the picture is read and re-encoded here,
        then sent by its owner (its answer, or 503 when the owner does not answer in time: then the
        picture is never sent, see SharedTier.forward's `expires`)."""
        from .shared import DOWN  # Redis mode only: the redis package is there

        platform, tier = self.web, self.web.tier
        assert tier is not None and platform.shared_api is not None
        key = platform.shared_api.key_of(request.headers.get("X-Client-ID"))
        try:
            record = await tier.find(key) if key is not None else None
        except DOWN:
            return fail(503)
        if record is None or record.owner == tier.instance or record.ended or not record.rich or record.spy or record.nojs:
            platform.count("refused", "unknown_id")
            return fail(400)
        image = await self.read_picture(request, record.key)
        if not isinstance(image, Image):
            return image
        form = {
            "ref": request.headers.get("X-Ref", ""), "d": base64.b64encode(image.data).decode("ascii"), "m": image.mime,
            "w": str(image.width), "h": str(image.height),
        }  # fmt: skip
        try:
            answer = await tier.forward(record.owner, record.key, UPLOAD, form, expires=True)
        except DOWN:
            return fail(503)
        if answer is None:
            return text("fail: not sent: the chat's server did not answer in time; try again", 503)
        status, body = answer
        return web.Response(text=body, status=status, content_type="application/json" if status == 200 else "text/plain")

    async def read_picture(
        self, request: web.Request, key: str, name: Callable[[], object] | None = None,
    ) -> Image | web.Response:
        """The picture of an upload of client `key`, decoded and re-encoded, or the answer refusing it
        (one at a time per client: on every instance in Redis mode). `name` takes the new line's id
        once the body is read, before decoding (a picture refused then still used its id)."""
        platform, config = self.web, self.web.config
        tier = platform.tier
        claimed = await tier.claim_upload(key) if tier is not None else key not in self.uploading
        if claimed is None:  # Redis is away
            return fail(503)
        if not claimed:
            return self.refuse(RichError(429, "one picture at a time"))
        self.uploading.add(key)
        try:
            body = await self._body(request, config.image_max_bytes)
            if body is None:
                platform.count("refused", "too_large")
                response = fail(413)
                response.force_close()
                return response
            if name is not None:
                name()
            core = self.web.image_limits or ImageLimits()  # [bridge.images], handed in by the daemon
            limits = core.model_copy(update={"max_bytes": min(core.max_bytes, config.image_max_bytes)})
            return await prepare(body, limits)
        except RichError as exc:
            return self.refuse(exc)
        except ImageRefused as exc:
            platform.count("refused", "picture")
            return text(f"fail: {exc.reason}", 415)
        finally:
            self.uploading.discard(key)
            if tier is not None:
                await tier.release_upload(key)

    def upload(self, client: Client, ref: str, image: Image, *, named: bool = False) -> web.Response:
        """Send an uploaded picture on the client's new line `ref` (`named`: its id is taken already;
        the upload of a client another instance read comes here forwarded): the picture as it will
        be shown, or the refusal."""
        try:
            self._check(client)
            if not named:
                client.lines().own_line(ref)
        except RichError as exc:
            return self.refuse(exc)
        shown = self.web.clients.pictures.keep(client.key, image, ref)
        answer = self.act(client, Message("", ref=ref, image=image))
        return json_answer(shown) if answer.status == 200 else answer

    def forwarded_upload(self, client: Client | None, form: dict[str, str]) -> web.Response:
        """An upload another instance read (see SharedApi.upload_elsewhere), its picture in the form."""
        try:
            image = Image(base64.b64decode(form["d"], validate=True), form["m"], int(form["w"]), int(form["h"]))
        except (KeyError, ValueError):
            return fail(400)
        if client is None:
            return fail(400)
        return self.upload(client, form.get("ref", ""), image)

    async def _body(self, request: web.Request, limit: int) -> bytes | None:
        """The request body, or None beyond `limit` bytes (read within body_timeout: 408 beyond)."""
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.web.config.body_timeout):
                while chunk := await request.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        return None
                    chunks.append(chunk)
        except TimeoutError:
            self.web.count("refused", "slow_body")
            raise web.HTTPRequestTimeout() from None
        return b"".join(chunks)

    def refuse_not_rich(self) -> web.Response:
        """The answer to a rich action of a client that cannot do it."""
        return self.refuse(RichError(400, "not a chat that can do this"))

    def refuse(self, exc: RichError) -> web.Response:
        self.web.count("refused", "rich_throttled" if exc.status == 429 else "bad_request")
        return text(f"fail: {exc}", exc.status)

    def act(self, client: Client, event: Event) -> web.Response:
        client.answered = True
        if not self.web.submit(self.web.room(client), event):
            self.web.count("refused", "core")
            return fail(503)
        return text(WIN)
