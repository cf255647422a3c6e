"""The no-JavaScript chat's handlers: /nojs/start opens a chat, /nojs/chat streams it, /nojs/send answers its form."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.events import Connected, Disconnected, Edit, Event, Message, Reaction, Reason, Report, Retract

from . import nojs_html, nojs_rich
from .clients import Client
from .identity import COOKIE as KEY_COOKIE
from .middleware import NOJS_FORM_HEADERS, NOJS_PAGE_CSP, SECURITY_HEADERS
from .omegle_api import gone, start_refusal
from .nojs_rich import RichLine
from .protocol import ProtocolError, parse_start
from .render import PICTURE_NOT_SHOWN
from .rich import RichError

if TYPE_CHECKING:
    from .nojs_shared import NoJsShared
    from .platform import WebPlatform

__all__ = ["COOKIE", "NOJS_WAKE", "NoJsChat"]

NOJS_WAKE = 0.5  # seconds between checks that a no-JS stream's reader is still there
# The chat's id for GET /nojs/chat, so a reload (or a cut stream) takes the chat up again: a
# session cookie, HttpOnly, SameSite=Strict, sent only to /nojs; never in a URL.
COOKIE = "nojs"


def html(body: str, status: int = 200) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers.update(NOJS_FORM_HEADERS)  # it may be shown in the no-JS page's frame
    return response


class NoJsChat:
    """One streamed HTML page per chat, fed from the client's queue of ["line", html] items."""

    wake_every = NOJS_WAKE

    def __init__(self, platform: WebPlatform) -> None:
        self.web = platform
        self.shared: NoJsShared | None = None  # Redis mode: transcripts in Redis, pages on any instance

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/nojs/start", self.on_start)
        router.add_get("/nojs/start", self.on_start, allow_head=False)
        router.add_get("/nojs/chat", self.on_chat, allow_head=False)
        router.add_post("/nojs/send", self.on_send)

    def deliver(self, client: Client, event: Event, line: str | None = None, picture: dict | None = None) -> None:
        """Queue the HTML lines showing `event` on the client's stream."""
        if isinstance(event, Connected):
            client.chatting = True
        final = nojs_html.ends_stream(event)
        if final:
            client.ended, client.chatting = True, False
        if isinstance(event, (Edit, Retract, Reaction)):
            self.change(client, event)
            return
        if isinstance(event, Message) and line is not None:
            who = event.stranger or "Stranger"
            answers = self._answers(client, event)
            quote = nojs_rich.clip(event.quote) if event.quote and answers is None and event.reply_to else None
            shown = RichLine(line, False, who, event.text, quote, answers)
            shown.picture = picture
            items: list[list] = [["rich", shown]]
            if event.image is not None and picture is None:
                items.append(["line", nojs_html.notice_line(PICTURE_NOT_SHOWN)])
            self._queue(client, items)
            return
        items = [["line", line] for line in nojs_html.lines(event, spy=client.spy)]
        if items:
            self._queue(client, items, force=final)
        elif final:
            client.wake()
            self._queue(client, [])

    def _queue(self, client: Client, items: list[list], *, force: bool = False) -> None:
        """Queue lines for the client's stream (in Redis mode, for its transcript there)."""
        self.web.clients.push(client, items, force=force)
        if self.shared is not None:
            self.shared.queued(client)

    def _answers(self, client: Client, message: Message) -> RichLine | None:
        """The line of this chat a reply answers, if the transcript still has it."""
        if message.reply_to is None:
            return None
        return nojs_rich.find(client.queue, message.reply_to) or nojs_rich.find(client.transcript or [], message.reply_to)

    def change(self, client: Client, event: Edit | Retract | Reaction, who: str = "Stranger") -> None:
        """Apply an edit, deletion or reaction to its line; a line already on the screen is shown
        anew by redrawing the page (the stream ends with a refresh), once however many changes come."""
        line = nojs_rich.find(client.queue, event.ref)
        queued = line is not None
        if line is None:
            line = nojs_rich.find(client.transcript or [], event.ref)
        if line is None:
            return  # older than the transcript: nothing on the screen to change
        match event:
            case Edit(text=text):
                line.edit(text)
            case Retract():
                line.retract()
            case Reaction(emoji=emoji, add=add, stranger=label):
                line.react(emoji, add, label or who)
        if queued or (self.shared is not None and self.shared.change(client, line)):
            return
        if not any(item[0] == "redraw" for item in client.queue):
            self.web.clients.push(client, [["redraw"]], force=True)

    def refused(self, client: Client, text: str) -> None:
        """The core refused the start: show its notice; the stream then closes."""
        client.chatting = False
        self._queue(client, [["line", nojs_html.notice_line(text)]], force=True)

    async def on_start(self, request: web.Request) -> web.StreamResponse:
        """POST (or GET) /nojs/start: a chat without JavaScript. Answers 303 to /nojs/chat, the
        chat's page, with the chat's id in a cookie (so a reload of that page is the same chat)."""
        platform, clients = self.web, self.web.clients
        form = {k: request.query.getone(k) for k in request.query if k != "id"}
        if request.method == "POST":
            posted = await platform.read_form(request)
            form.update(posted)
            old = clients.find(posted.get("id"))  # Next: end the chat this form came from
            if old is not None and old.nojs:
                self.leave(old)
            elif self.shared is not None:
                await self.shared.end_elsewhere(posted.get("id"))
        chosen = nojs_html.settings(form)
        try:
            wanted = parse_start(nojs_html.start_params(form))
        except ProtocolError as exc:
            platform.count("refused", "bad_request")
            return html(nojs_html.error_page(f"Cannot start: {exc}."), 400)
        seen_from = platform.address(request)
        address = seen_from if self.shared is None else clients.key_of(seen_from)  # Redis mode: counted by its keyed hash
        refusal = await self._refusal(seen_from, address)
        if refusal is not None:
            return refusal
        identity = await platform.identities.for_page(request.cookies.get(KEY_COOKIE), seen_from)
        client = clients.create(address, spy=wanted.spy, nojs=True)
        client.settings = chosen
        if self.shared is not None:
            await self.shared.record(client)
        start = dataclasses.replace(wanted.start, user=identity.user)
        if not platform.submit(platform.room(client), start):
            self.leave_now(client, submit=False)
            return html(nojs_html.error_page("The server is busy; try again."), 503)
        platform.count("started", start.mode.value)
        self.expect_stream(client)  # a start whose redirect is never followed leaves, too
        response = web.Response(status=303, headers={"Location": "/nojs/chat"})
        secure = (platform.config.public_origin or "").startswith("https://")
        response.set_cookie(COOKIE, client.secret, path="/nojs", httponly=True, samesite="Strict", secure=secure)
        if identity.cookie is not None:
            platform.set_key_cookie(response, identity.cookie)
        return response

    async def on_chat(self, request: web.Request) -> web.StreamResponse:
        """GET /nojs/chat: the chat as one long-lived `text/html` stream: every line so far, then
        each new one as it comes. A newer stream of the same chat (a reload) takes over; a chat
        whose stream closed and is not taken up again within nojs_grace seconds is left."""
        platform, clients = self.web, self.web.clients
        client = clients.find(request.cookies.get(COOKIE))
        if self.shared is not None and not self.shared.served_here(client):
            return await self.shared.on_chat(request, request.cookies.get(COOKIE, ""))
        if client is None or not client.nojs:
            platform.count("refused", "unknown_id")
            return self.page_error("This chat has ended.", 400)
        address = platform.address(request)
        polls = clients.polls
        if polls[address] >= platform.config.max_polls_per_address:
            platform.count("refused", "polls_per_address")
            return self.page_error("Too many chats from your address.", 429)
        client.stay()
        client.stream += 1
        mine = client.stream
        client.wake()  # an older stream of this chat ends
        polls[address] += 1
        response = self.stream_response()
        try:
            await response.prepare(request)
            chosen = client.settings or {}
            head = nojs_html.page_head(client.secret, chosen, spy=client.spy)
            await self.write(response, head + "".join(nojs_rich.shown(item) for item in client.transcript or ()))
            if await self._stream(request, response, client, mine):
                await self.write(response, nojs_html.end_of_page(chosen))
                await response.write_eof()
        except (ConnectionError, TimeoutError):
            pass  # the reader went away (or stalled for client_timeout)
        finally:
            polls[address] -= 1
            if polls[address] <= 0:
                del polls[address]
            if client.stream == mine:  # (a stream a newer one took over leaves the chat to it)
                if client.ended or platform.closing:
                    clients.forget(client)
                else:
                    self.expect_stream(client)
        return response

    def stream_response(self) -> web.StreamResponse:
        """The chat page's streamed answer, before it is prepared."""
        response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Security-Policy": NOJS_PAGE_CSP})
        response.content_type = "text/html"
        response.charset = "utf-8"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each line on at once
        return response

    @staticmethod
    def page_error(text: str, status: int) -> web.Response:
        return html(nojs_html.error_page(text), status)

    def expect_stream(self, client: Client) -> None:
        """Leave the chat unless a stream of it opens within nojs_grace seconds (on any instance)."""
        client.stay()
        client.leaving = asyncio.get_running_loop().call_later(self.web.nojs_grace, self._gone, client)

    def _gone(self, client: Client) -> None:
        client.leaving = None
        if self.shared is not None and client.key in self.shared.recorded:
            self.web.spawn(self.shared.leave_unless_streaming(client))
            return
        self.leave_now(client)

    def leave_now(self, client: Client, *, submit: bool = True) -> None:
        """The chat's page is gone: it ends, and the client with it (in Redis too)."""
        client.leaving = None
        if self.web.clients.get(client.key) is client:
            if not client.ended and submit:
                self.web.submit(self.web.room(client), Disconnected())
            self.web.clients.forget(client)
            if self.shared is not None and client.key in self.shared.recorded:
                self.shared.recorded.discard(client.key)
                self.web.spawn(self.shared.tier.forget(client.key, client.address))

    async def _refusal(self, seen_from: str, address: str) -> web.Response | None:
        """Why a start from `seen_from` (counted as `address`) is refused, or None."""
        platform, clients = self.web, self.web.clients
        if platform.closing:
            return self.page_error("The server is shutting down.", 503)
        shared = await self.shared.sessions(address) if self.shared is not None else None
        refused = start_refusal(platform, clients.sessions[address] if shared is None else shared)
        if refused is None and clients.polls[seen_from] >= platform.config.max_polls_per_address:
            platform.count("refused", "polls_per_address")
            refused = web.Response(status=429)
        if refused is None:
            return None
        full = refused.status == 503
        return self.page_error("The server is full; try again later." if full else "Too many chats from your address.", refused.status)

    async def _stream(self, request: web.Request, response: web.StreamResponse, client: Client, mine: int) -> bool:
        """Write the client's lines as they come, with filler when quiet, until its chat ends
        (True), or its reader leaves, a newer stream takes over or the server closes (False)."""
        loop = asyncio.get_running_loop()
        quiet_since, fills = loop.time(), 0
        limit = self.web.config.max_queue
        transcript = client.transcript
        assert transcript is not None  # every no-JS client has one
        while not self.web.closing and client.stream == mine:
            if client.queue:
                due = client.redrawn + self.web.nojs_redraw_gap - loop.time()
                if due > 0 and any(item[0] == "redraw" for item in client.queue):
                    # changes come faster than a page should reload: gather them, redraw once
                    if gone(request):
                        return False
                    await client.wait(due)
                    continue
                batch = client.take()
                lines = [item[1] for item in batch if item[0] != "redraw"]
                transcript.extend(lines)  # kept before the write: a cut stream loses nothing
                del transcript[:-limit]
                html_ = "".join(nojs_rich.shown(line) for line in lines)
                if len(lines) < len(batch):  # a shown line changed: the page loads itself again
                    client.redrawn = loop.time()
                    await self.write(response, html_ + nojs_rich.REDRAW)
                    return False
                await self.write(response, html_)
                quiet_since = loop.time()
                continue
            if client.ended:
                return True
            if self.web.clients.get(client.key) is not client or gone(request):
                return False
            await client.wait(NOJS_WAKE)
            client.last_seen = time.monotonic()
            if not client.queue and loop.time() - quiet_since >= self.web.nojs_keepalive:
                await self.write(response, nojs_html.filler(fills))
                quiet_since, fills = loop.time(), fills + 1
        return False

    async def write(self, response: web.StreamResponse, chunk: str) -> None:
        # A reader that stops reading blocks the write (bounded transport buffer): after
        # client_timeout it counts as gone instead of holding the handler forever.
        async with asyncio.timeout(self.web.config.client_timeout):
            await response.write(chunk.encode("utf-8"))

    def leave(self, client: Client) -> None:
        """Stop (or Next): end the chat, show it on the stream, which then closes."""
        if client.ended:
            return
        self.web.submit(self.web.room(client), Disconnected())
        client.ended, client.chatting = True, False
        line = nojs_html.lines(Disconnected(reason=Reason.USER))
        self._queue(client, [["line", item] for item in line], force=True)

    async def on_send(self, request: web.Request) -> web.Response:
        """POST /nojs/send (the form in the no-JS page's frame): id, action=send|stop, msg.
        Answers the form again (in Redis mode the chat's owner acts, wherever the form came)."""
        platform = self.web
        form = await platform.read_form(request)
        chosen = nojs_html.settings(form)
        client = platform.clients.find(form.get("id"))
        if client is None and self.shared is not None:
            return await self.shared.on_send(request, form)
        if client is None or not client.nojs:
            platform.count("refused", "unknown_id")
            return html(nojs_html.send_form(None, chosen), 400)
        status, outcome = self.act(client, form)
        return self.answer_form(status, outcome, client.secret, chosen, spy=client.spy)

    @staticmethod
    def answer_form(status: int, outcome: str, secret: str | None, chosen: dict, *, spy: bool) -> web.Response:
        """The answer to the send form from what `act` did: the form again (without the id once
        the chat ended), or an error page."""
        if outcome.startswith("error:"):
            return html(nojs_html.error_page(outcome.removeprefix("error:")), status)
        return html(nojs_html.send_form(None if outcome == "ended" else secret, chosen, spy=spy), status)

    def act(self, client: Client, form: dict[str, str]) -> tuple[int, str]:
        """What the send form asks of a chat this instance owns: (status, "" for the form again,
        "ended" for the form of an ended chat, or "error:<text>")."""
        platform = self.web
        client.last_seen = time.monotonic()
        action = form.get("action") or "send"
        if client.ended:
            return 200, "ended"
        if action == "stop":
            self.leave(client)
            return 200, "ended"
        if action == "report":
            # The core ends the chat as a report and says what follows, on the stream.
            if not platform.submit(platform.room(client), Report()):
                platform.count("refused", "core")
                return 503, "error:The server is busy; try again."
            return 200, "ended"
        message = form.get("msg")
        if (action in ("edit", "delete") or action.startswith("react:")) and not client.spy:
            return self._rich_action(client, form, action)
        if action != "send" or message is None or client.spy:
            platform.count("refused", "bad_request")
            return 400, "error:That form cannot do this."
        if message.strip():
            client.answered = True  # a notice from now on answers this message, not the start
            ref = client.lines().mint_own() if client.chatting else None
            if not platform.submit(platform.room(client), Message(message, ref=ref)):
                platform.count("refused", "core")
                return 503, "error:The server is busy; try again."
            if ref is not None:
                self._queue(client, [["rich", RichLine(ref, True, "You", message)]])
        return 200, ""

    def _rich_action(self, client: Client, form: dict[str, str], action: str) -> tuple[int, str]:
        """The send form's Edit last / Delete last (the user's newest message) and its reaction
        buttons (on the stranger's newest message)."""
        platform = self.web
        items = (client.transcript or []) + client.queue
        react = action.startswith("react:")
        target = nojs_rich.last_stranger(items) if react else nojs_rich.last_own(items)
        if target is None or not client.chatting:
            return 200, ""  # nothing to act on (yet): the form as it was
        event: Edit | Retract | Reaction
        try:
            book = client.lines()
            if action == "edit":
                new = form.get("msg") or ""
                if not new.strip() or len(new) > nojs_html.MAX_MESSAGE:
                    return 200, ""
                book.edit(target.ref)
                event = Edit(target.ref, new)
            elif action == "delete":
                book.retract(target.ref)
                event = Retract(target.ref)
            else:
                emoji = action.removeprefix("react:")
                add = emoji not in target.reactions or "You" not in target.reactions[emoji]
                if not book.react(target.ref, emoji, add):
                    return 200, ""
                event = Reaction(target.ref, emoji, add)
        except RichError as exc:
            platform.count("refused", "rich_throttled" if exc.status == 429 else "bad_request")
            return exc.status, f"error:Not done: {exc}."
        if not platform.submit(platform.room(client), event):
            platform.count("refused", "core")
            return 503, "error:The server is busy; try again."
        self.change(client, event, who="You")
        return 200, ""
