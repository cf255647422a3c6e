"""The no-JavaScript chat in Redis mode: its transcript in Redis, its page streamed by any instance, its form forwarded to the owner."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.events import Disconnected, Reason

from . import nojs_html, nojs_rich
from .clients import ID_LENGTH, Client
from .nojs import html
from .omegle_api import gone
from .shared import DOWN, SharedTier

if TYPE_CHECKING:
    from .nojs import NoJsChat
    from .platform import WebPlatform

__all__ = ["CLOSED", "NoJsShared", "READ_EVERY", "SEND"]

log = logging.getLogger(__name__)

READ_EVERY = 2.0  # seconds an open stream looks at its transcript even when no wake came (and says it is open)
STREAM_LEASE = 3 * READ_EVERY  # seconds a stream's count against max_polls_per_address lasts unless renewed
RETRY = 0.5  # seconds before lines Redis did not take are offered again
SEND = "/nojs/send"  # forwarded to the owner: the send form's actions
CLOSED = "/nojs/closed"  # told to the owner: the current stream of its chat closed (its grace begins)


class NoJsShared:
    """The owner writes a chat's lines (rendered HTML) to its transcript in Redis, and changed lines
    again; every stream, on whichever instance, shows the transcript from its start, then the lines
    that follow, by line number: a reload anywhere shows every line once, in order. A line already
    in it that changes (an edit, a deletion, a reaction) makes the open stream redraw its page,
    at most once per nojs_redraw_gap on every instance."""

    def __init__(self, platform: WebPlatform, chat: NoJsChat, tier: SharedTier) -> None:
        self.web = platform
        self.chat = chat
        self.tier = tier
        self.recorded: set[str] = set()  # chats this instance owns whose records are in Redis
        self._flushing: set[str] = set()

    # ---- the owner's side ------------------------------------------------------------------

    async def record(self, client: Client) -> bool:
        """Make the record of a chat this instance just started; False when Redis did not take it
        (the chat is then served by this instance alone, from memory)."""
        try:
            await self.tier.create(client.key, client.address, spy=client.spy, likes=False, rich=True, acking=False,
                                   nojs=client.settings or {})
        except DOWN:
            return False
        self.recorded.add(client.key)
        return True

    async def sessions(self, address: str) -> int | None:
        """Live chats of `address` (a keyed hash) on every instance (None: Redis is away, count this one's)."""
        if self.tier.down():
            return None
        try:
            return await self.tier.sessions(address)
        except DOWN:
            return None

    def queued(self, client: Client) -> None:
        """Lines were queued for a chat (or it ended): they go to its transcript, in order."""
        if client.key in self.recorded and client.key not in self._flushing:
            self._flushing.add(client.key)
            self.web.spawn(self._flush(client))

    async def _flush(self, client: Client) -> None:
        clients, limit = self.web.clients, self.web.config.max_queue
        transcript = client.transcript
        assert transcript is not None  # every no-JS client has one
        try:
            while True:
                await clients.pictures.written(client.key)  # no picture link before its picture is served
                batch, client.queue, final = client.queue, [], client.ended
                client.dropped = False
                at = client.base + len(transcript)
                lines, changed, kept = [], [], []
                for item in batch:
                    if item[0] in ("line", "rich"):
                        if isinstance(item[1], nojs_rich.RichLine):
                            item[1].at = at + len(lines)
                        lines.append(nojs_rich.shown(item[1]))
                        kept.append(item[1])
                    elif item[0] == "set" and item[1].at >= 0:
                        changed.append((item[1].at, item[1].html()))
                excess = max(0, len(transcript) + len(kept) - limit)
                try:
                    woke = await self.tier.transcripts.append(
                        client.key, client.address, lines, changed, base=client.base + excess, final=final,
                    )  # fmt: skip
                except DOWN as exc:
                    log.info("web: Redis did not take a no-JS chat's lines (%s); retrying", type(exc).__name__)
                    client.queue[:0] = batch
                    await asyncio.sleep(RETRY)
                    if clients.get(client.key) is not client or self.web.closing:
                        return
                    continue
                if woke is None:  # Redis lost the record: this instance serves the chat from memory now
                    self.recorded.discard(client.key)
                    client.queue[:0] = batch
                    client.wake()
                    return
                transcript.extend(kept)
                del transcript[:excess]
                client.base += excess
                if final:
                    self.recorded.discard(client.key)
                    clients.forget(client)  # its record keeps the end for the stream that shows it
                    return
                if not client.queue:
                    return
        finally:
            self._flushing.discard(client.key)

    def change(self, client: Client, line: nojs_rich.RichLine) -> bool:
        """A line changed; True if it is in the transcript in Redis (shown again by a redraw there)."""
        if client.key not in self.recorded or line.at < 0:
            return False
        if not any(item[0] == "set" and item[1] is line for item in client.queue):
            self.web.clients.push(client, [["set", line]], force=True)
        self.queued(client)
        return True

    def closed(self, client: Client) -> None:
        """The current stream of a chat this instance owns closed (here or elsewhere): it leaves unless
        a stream of it opens within nojs_grace (see `leave_unless_streaming`)."""
        self.chat.expect_stream(client)

    async def leave_unless_streaming(self, client: Client) -> None:
        """A chat's grace is over: it leaves unless a stream of it began since, or one is open."""
        now = time.time()
        try:
            streaming = await self.tier.transcripts.streaming(client.key, now - self.web.nojs_grace, now - 2 * READ_EVERY - 1.0)
        except DOWN:
            streaming = False
        if streaming and self.web.clients.get(client.key) is client:
            client.last_seen = time.monotonic()
            return
        self.chat.leave_now(client)

    def adopted(self, client: Client, raw: dict[str, str], length: int) -> None:
        """A chat a previous run of this instance owned, taken back (its transcript in Redis has
        `length` lines): new lines follow them (the earlier ones can no longer be edited or reacted
        to: only their HTML is left); it leaves unless a stream of it opens within nojs_grace."""
        client.nojs, client.rich = True, True
        client.transcript = [""] * length  # stand-ins: they count its lines (their HTML is in Redis)
        client.settings = json.loads(raw.get("cs") or "{}")
        client.base = int(raw.get("tb") or 0)
        client.chatting = True  # a chat taken back is resumed (or ends, which the core says)
        self.recorded.add(client.key)
        self.chat.expect_stream(client)

    async def end_orphan(self, key: str) -> None:
        """The owner of a no-JS chat is gone for good: its transcript says the chat ended."""
        lines = nojs_html.lines(Disconnected(reason=Reason.ERROR))
        await self.tier.transcripts.append(key, "", lines, [], base=-1, final=True)

    # ---- any instance ------------------------------------------------------------------------

    def key_of(self, secret: str | None) -> str | None:
        if not secret or len(secret) != ID_LENGTH:
            return None
        return self.web.clients.key_of(secret)

    def served_here(self, client: Client | None) -> bool:
        """Whether this instance serves the chat from memory (its record never reached Redis)."""
        return client is not None and client.key not in self.recorded

    async def on_chat(self, request: web.Request, secret: str) -> web.StreamResponse:
        """GET /nojs/chat of a chat in Redis, on any instance: its page, then each new line."""
        platform, tier = self.web, self.tier
        key = self.key_of(secret)
        if key is None:
            platform.count("refused", "unknown_id")
            return self.chat.page_error("This chat has ended.", 400)
        async with platform.shared_api.polling(platform.address(request), STREAM_LEASE) as slot:  # type: ignore[union-attr]
            if slot is None:
                return self.chat.page_error("Too many chats from your address.", 429)
            try:
                begun = await tier.transcripts.begin(key)
            except DOWN:
                return self.chat.page_error("The server cannot reach its database; try again.", 503)
            if begun is None:
                platform.count("refused", "unknown_id")
                return self.chat.page_error("This chat has ended.", 400)
            mine, previous, base, version, ended, _, settings, spy = begun[:8]
            lines: list[str] = begun[8:]
            if previous and previous != tier.instance:
                tier.wake(previous, key)  # the older stream there ends (it reads that it was superseded)
            chosen = json.loads(settings)
            response = self.chat.stream_response()
            done = False
            try:
                await response.prepare(request)
                await self.chat.write(response, nojs_html.page_head(secret, chosen, spy=spy == "1") + "".join(lines))
                done = await self._follow(request, response, key, int(mine), int(base) + len(lines), int(version), bool(ended), slot)
                if done:
                    await self.chat.write(response, nojs_html.end_of_page(chosen))
                    await response.write_eof()
            except (ConnectionError, TimeoutError):
                pass  # the reader went away (or stalled for client_timeout)
            except DOWN as exc:
                log.info("web: a no-JS stream lost Redis (%s)", type(exc).__name__)
            finally:
                if await tier.transcripts.end(key, int(mine), done=done) and not done and not platform.closing:
                    self._tell_closed(key)
            return response

    async def _follow(
        self, request: web.Request, response: web.StreamResponse, key: str, mine: int, pos: int, version: int,
        ended: bool, slot: str,
    ) -> bool:
        """Write the lines after line number `pos` as they come, with filler when quiet, until the
        chat's end is shown (True), or its reader leaves, a newer stream takes over, a shown line
        changed (the page redraws itself) or the server closes (False)."""
        platform, tier = self.web, self.tier
        loop = asyncio.get_running_loop()
        quiet_since = read_at = renewed = loop.time()
        fills, redraw = 0, False
        hashed = platform.clients.key_of(platform.address(request))
        while not platform.closing:
            if ended and not redraw:
                return True
            woken = await tier.wait(key, self.chat.wake_every)
            if gone(request):
                return False
            now = loop.time()
            if woken or now - read_at >= READ_EVERY:
                read_at = now
                reply = await tier.transcripts.read(key, mine, pos)
                if reply[0] != "ok":
                    return False  # superseded by a newer stream, or the chat is gone
                base, changed, ended, redrawn = int(reply[1]), int(reply[2]), reply[3] == 1, float(reply[4])
                lines: list[str] = reply[5:]
                if lines:
                    await self.chat.write(response, "".join(lines))
                    pos += len(lines)
                    quiet_since = now
                redraw = redraw or changed != version or base > pos - len(lines)
                if redraw:
                    due = redrawn + platform.nojs_redraw_gap - time.time()
                    if due > 0:  # changes come faster than a page should reload: gather them, redraw once
                        read_at = now - READ_EVERY + min(due, READ_EVERY)
                        continue
                    await tier.transcripts.redrawn(key, time.time())
                    await self.chat.write(response, nojs_rich.REDRAW)
                    return False
            if now - renewed >= READ_EVERY and slot:
                await tier.poll_renew(hashed, slot, STREAM_LEASE)
                renewed = now
            if now - quiet_since >= platform.nojs_keepalive:
                await self.chat.write(response, nojs_html.filler(fills))
                quiet_since, fills = now, fills + 1
        return False

    def _tell_closed(self, key: str) -> None:
        client = self.web.clients.get(key)
        if client is not None:
            self.closed(client)
            return
        self.web.spawn(self._tell_owner(key))

    async def _tell_owner(self, key: str) -> None:
        try:
            record = await self.tier.find(key)
        except DOWN:
            return  # the owner's sweep ends the chat if no stream opens again
        if record is not None and not record.ended and record.owner != self.tier.instance:
            self.tier.tell(record.owner, key, CLOSED, {})

    async def on_send(self, request: web.Request, form: dict[str, str]) -> web.Response:
        """POST /nojs/send of a chat another instance owns: forwarded to it; the form comes back."""
        platform, chat = self.web, self.chat
        chosen = nojs_html.settings(form)
        secret = form.get("id")
        key = self.key_of(secret)
        try:
            record = await self.tier.find(key) if key is not None else None
        except DOWN:
            return chat.page_error("The server cannot reach its database; try again.", 503)
        if record is None or not record.nojs or record.owner == self.tier.instance:
            platform.count("refused", "unknown_id")
            return html(nojs_html.send_form(None, chosen), 400)
        if record.ended:
            return html(nojs_html.send_form(None, chosen))
        answer = await self.tier.forward(record.owner, record.key, SEND, form)
        status, outcome = answer if answer is not None else (200, "")  # the owner is restarting: it acts when back
        return chat.answer_form(status, outcome, secret, chosen, spy=record.spy)

    async def end_elsewhere(self, secret: str | None) -> None:
        """Next, from the form of a chat another instance owns: that chat ends there."""
        key = self.key_of(secret)
        try:
            record = await self.tier.find(key) if key is not None else None
        except DOWN:
            return
        if record is not None and record.nojs and not record.ended and record.owner != self.tier.instance:
            self.tier.tell(record.owner, record.key, SEND, {"action": "stop"})

