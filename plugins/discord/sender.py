"""The outbox's Sender for Discord: stranger text through the channel webhook, notices from the bot, typing."""

from __future__ import annotations

import collections
import io
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import discord
from discord.http import Route

from bridge.abc import KeyValue
from bridge.delivery import Item, Permanent, RateLimited

from . import render
from .config import DiscordConfig
from .threads import Threads
from .lines import Line, Upload

if TYPE_CHECKING:
    from .rich import Rich

__all__ = ["DiscordSender", "WEBHOOK_NAME"]

log = logging.getLogger(__name__)

WEBHOOK_NAME = "stranger-bridge"
UNKNOWN_WEBHOOK = 10015  # Discord's JSON error code of a deleted webhook (a deleted thread is 10003)


class _WebhookGone(Exception):
    """The webhook was deleted: forget it and fall back to bot messages for this message."""


class DiscordSender:
    """Posts to session threads: webhook messages (no nonce: read back after a failure), bot messages with a nonce."""

    def __init__(self, config: DiscordConfig, state: KeyValue, threads: Threads) -> None:
        self.config = config
        self.state = state
        self.threads = threads
        self.client: discord.Client | None = None  # set when the platform runs
        self.session: aiohttp.ClientSession | None = None  # webhook calls
        self.webhooks: dict[int, tuple[int, str]] = {}  # parent channel -> (webhook id, token)
        self.no_webhook: set[int] = set()
        # The newest message id known per open thread (where a read-back starts); an unknown one
        # is asked once.
        self.newest: dict[int, int] = {}
        self.timeout = aiohttp.ClientTimeout(total=config.request_timeout)  # of each call made here
        # The stranger lines (core ref, quote, picture) of each thread's queued text items, in order.
        self.lines: dict[int, collections.deque[tuple[str, Line]]] = {}
        # Told the lines of a text item and the Discord message ids that now show it.
        self.on_posted: Callable[[int, Item, list[Line], list[int]], None] | None = None
        self.rich: Rich | None = None  # edits, deletions, reactions, pictures (set by the platform)

    # ---- the outbox's Sender -----------------------------------------------------------------

    async def send_text(self, thread: int, item: Item) -> None:
        marker = item.marker if item.count > 1 else None
        lines = self.take_lines(thread, item)
        if self.rich is not None and "screened" not in item.memo:
            for line in lines:  # most lines have no picture: no call then
                if line.picture is not None:
                    lines = await self.rich.screen(thread, item, lines)
                    break
            item.memo["screened"] = True
        if not item.text.strip() and not any(line.picture for line in lines):
            return  # a picture alone, not shown here (the notice says so)
        ids = await self.post_text(thread, item, render.merge_note(marker) if marker else None)
        if self.on_posted is not None:
            self.on_posted(thread, item, lines, ids)

    async def send_payload(self, thread: int, item: Item) -> None:
        if isinstance(item.payload, dict):
            await self.post_payload(thread, item.payload, item.key)
        else:
            assert self.rich is not None
            await self.rich.send(thread, item)

    # ---- which stranger lines an outbox item carries -----------------------------------------

    def add_line(self, thread: int, key: str, line: Line) -> None:
        """The text item `key` just queued for `thread` shows `line` (its core ref, quote, picture)."""
        self.lines.setdefault(thread, collections.deque()).append((key, line))

    def take_lines(self, thread: int, item: Item) -> list[Line]:
        """The lines of a text item on its first attempt (one, or `count` when the outbox merged
        consecutive texts into it), kept in its memo for retries. Lines of items dropped from the
        queue (a closed outbox) before this one are skipped."""
        memo = item.memo
        if "lines" in memo:
            return memo["lines"]
        queue = self.lines.get(thread)
        if queue and item.count == 1 and queue[0][0] == item.key:  # the usual case: its line is first
            found = memo["lines"] = [queue.popleft()[1]]
            if not queue:
                del self.lines[thread]
            return found
        found = []
        if queue is None or all(key != item.key for key, _ in queue):
            item.memo["lines"] = found
            return found  # a text queued without a line: nothing to report, and later lines stay
        while queue:
            key, line = queue.popleft()
            if key == item.key:
                found.append(line)
                break
        while queue and len(found) < item.count:
            found.append(queue.popleft()[1])
        if queue is not None and not queue:
            del self.lines[thread]
        item.memo["lines"] = found
        return found

    async def send_typing(self, thread: int, on: bool) -> None:
        if on:  # Discord has no "stopped typing" call: the indicator ends with a message or after 10 s
            await self.post_typing(thread)

    # ---- REST --------------------------------------------------------------------------------

    def saw(self, thread: int, mid: int) -> None:
        """A message id of this thread was seen (posted or echoed)."""
        if mid > self.newest.get(thread, 0):
            self.newest[thread] = mid

    def release(self, thread: int) -> None:
        """The thread's chat is over and its outbox is done: forget what was kept for it."""
        self.newest.pop(thread, None)
        self.lines.pop(thread, None)

    async def hook_of(self, thread: int) -> tuple[int, str] | None:
        """The webhook strangers speak through in this thread, or None (bot messages)."""
        parent = self.threads.parent_of(thread)
        if parent is None or not self.config.webhooks:
            return None
        return self.webhooks.get(parent) or await self._webhook(parent)  # known: no further call

    async def forget_hook(self, thread: int) -> None:
        """The webhook of this thread's channel was deleted: the next post makes a new one."""
        parent = self.threads.parent_of(thread)
        if parent is not None:
            self.webhooks.pop(parent, None)
            await self.state.set(f"webhook:{parent}", None)

    async def post_text(self, thread: int, item: Item, extra: str | None) -> list[int]:
        """Show one stranger text (in up to MAX_PARTS messages, a picture with the last); return
        their message ids. A retry goes on from the first part not known to be shown, so no part
        is ever shown twice."""
        hook = await self.hook_of(thread)
        lines = item.memo.get("lines") or []
        quote = lines[0].quote if len(lines) == 1 else None
        picture = lines[0].picture if len(lines) == 1 else None
        payloads = render.stranger_payloads(item.text, item.label, webhook=hook is not None, extra=extra, quote=quote)
        memo = item.memo
        ids: list[int] = memo.setdefault("ids", [])
        index = memo.get("done", 0)
        while index < len(payloads):
            upload = picture if index == len(payloads) - 1 else None
            mid: int | None = None
            if hook is not None:
                try:
                    mid = await self._webhook_part(hook, thread, payloads[index], memo, upload)
                except _WebhookGone:
                    await self.forget_hook(thread)
                    hook = None
                    payloads = render.stranger_payloads(item.text, item.label, webhook=False, extra=extra, quote=quote)
                    continue
            if hook is None:
                payload = payloads[index]
                mid = await self.post_payload(thread, payload, f"{item.key}{index}", upload)
            ids.append(mid or 0)
            for key in ("before", "maybe"):
                memo.pop(key, None)
            index += 1
            memo["done"] = index
        memo["webhook"] = hook is not None
        return ids if all(ids) else [i for i in ids if i]

    async def post_payload(self, thread: int, payload: dict, nonce: str, upload: Upload | None = None) -> int:
        """Post a bot message (with a nonce: a retry never shows it twice); its id."""
        assert self.client is not None
        body = {**payload, "nonce": nonce, "enforce_nonce": True}
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=thread)
        try:
            if upload is None:
                data = await self.client.http.request(route, json=body, timeout=self.timeout)
            else:
                body["attachments"] = [{"id": 0, "filename": upload.filename}]
                file = discord.File(io.BytesIO(upload.data), filename=upload.filename)
                form = [{"name": "payload_json", "value": json.dumps(body)},
                        {"name": "files[0]", "value": file.fp, "filename": upload.filename, "content_type": upload.mime}]
                data = await self.client.http.request(route, files=[file], form=form, timeout=self.timeout)
            mid = int(data["id"])
            self.saw(thread, mid)
            return mid
        except (discord.NotFound, discord.Forbidden) as exc:
            raise Permanent(str(exc)) from exc

    async def post_typing(self, thread: int) -> None:
        assert self.client is not None
        await self.client.http.request(Route("POST", "/channels/{channel_id}/typing", channel_id=thread), timeout=self.timeout)

    async def _webhook(self, parent: int) -> tuple[int, str] | None:
        """The one webhook of a parent channel, found or created once and remembered."""
        if parent in self.no_webhook:
            return None
        hook = self.webhooks.get(parent)
        if hook is not None:
            return hook
        raw = await self.state.get(f"webhook:{parent}")
        if raw:
            data = json.loads(raw)
            hook = self.webhooks[parent] = (int(data["id"]), data["token"])
            return hook
        assert self.client is not None and self.client.user is not None
        http = self.client.http
        try:
            found = await http.request(Route("GET", "/channels/{channel_id}/webhooks", channel_id=parent))
            mine = [
                w for w in found
                if w.get("token") and w.get("name") == WEBHOOK_NAME and str((w.get("user") or {}).get("id")) == str(self.client.user.id)
            ]
            data = mine[0] if mine else await http.request(
                Route("POST", "/channels/{channel_id}/webhooks", channel_id=parent), json={"name": WEBHOOK_NAME}
            )
        except discord.Forbidden:
            log.warning("no webhook permission in channel %s: strangers speak as the bot", parent)
            self.no_webhook.add(parent)
            return None
        hook = self.webhooks[parent] = (int(data["id"]), data["token"])
        await self.state.set(f"webhook:{parent}", json.dumps({"id": data["id"], "token": data["token"]}))
        return hook

    async def _webhook_part(self, hook: tuple[int, str], thread: int, payload: dict, memo: dict,
                            upload: Upload | None = None) -> int | None:
        """POST one message through the webhook. Webhook calls carry no nonce (Discord ignores one),
        so when an earlier attempt may have been stored (5xx, reset, timeout) the thread is read
        back first, looking for it after the newest message known before the first attempt."""
        assert self.session is not None
        if "before" not in memo:
            known = self.newest.get(thread)  # known from our posts and the gateway: no call
            memo["before"] = known if known is not None else await self._newest(thread)
        maybe = memo.get("maybe", False)
        if maybe and (stored := await self._stored(thread, hook[0], payload, memo["before"], upload)):
            return stored
        memo["maybe"] = True  # from here until an answer says otherwise, it may be stored
        url = f"{Route.BASE}/webhooks/{hook[0]}/{hook[1]}"
        params = {"thread_id": str(thread), "wait": "true"}
        if upload is None:
            request = self.session.post(url, params=params, json=payload)
        else:
            request = self.session.post(url, params=params, data=upload.form(payload))
        async with request as resp:
            status = resp.status
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
        if status < 300:
            mid = int((data or {}).get("id", 0))
            if mid > self.newest.get(thread, 0):  # saw(), written out: every stranger line passes here
                self.newest[thread] = mid
            return mid or None
        if status >= 500:
            raise ConnectionError(f"webhook answered {status}")  # maybe stored: read back before the retry
        memo["maybe"] = maybe  # a 4xx stored nothing
        if status == 429:
            raise RateLimited(float((data or {}).get("retry_after", 1.0)))
        if status == 404 and (data or {}).get("code") == UNKNOWN_WEBHOOK:
            raise _WebhookGone()
        raise Permanent(f"webhook answered {status}")  # 404 Unknown Channel: the thread is gone

    async def _newest(self, thread: int) -> int:
        """The newest message id of a thread: known from our posts and the gateway, else asked once."""
        known = self.newest.get(thread)
        if known is not None:
            return known
        assert self.client is not None
        route = Route("GET", "/channels/{channel_id}/messages", channel_id=thread)
        latest = await self.client.http.request(route, params={"limit": 1}, timeout=self.timeout)
        newest = max([thread, *(int(m["id"]) for m in latest)])
        self.saw(thread, newest)
        return newest

    async def _stored(self, thread: int, webhook_id: int, payload: dict, before: int, upload: Upload | None) -> int | None:
        assert self.client is not None
        route = Route("GET", "/channels/{channel_id}/messages", channel_id=thread)
        recent = await self.client.http.request(route, params={"after": before, "limit": 100}, timeout=self.timeout)
        for m in recent:
            if (
                str(m.get("webhook_id")) == str(webhook_id)
                and (m.get("content") or "").strip() == payload["content"].strip()  # Discord trims
                and m.get("author", {}).get("username") == payload.get("username")
                and bool(m.get("attachments")) == (upload is not None)
            ):
                self.saw(thread, int(m["id"]))
                return int(m["id"])
        return None
