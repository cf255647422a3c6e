"""The outbox's Sender for Discord: stranger text through the channel webhook, notices from the bot, typing."""

from __future__ import annotations

import json
import logging

import aiohttp
import discord
from discord.http import Route

from bridge.abc import KeyValue
from bridge.outbox import Item, Permanent, RateLimited

from . import render
from .config import DiscordConfig
from .threads import Threads

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

    # ---- the outbox's Sender -----------------------------------------------------------------

    async def send_text(self, thread: int, item: Item) -> None:
        marker = item.marker
        await self.post_text(thread, item, render.merge_note(marker) if marker else None)

    async def send_payload(self, thread: int, item: Item) -> None:
        await self.post_payload(thread, item.payload, item.key)

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

    async def post_text(self, thread: int, item: Item, extra: str | None) -> None:
        """Show one stranger text (in up to MAX_PARTS messages). A retry goes on from the first part
        not known to be shown, so no part is ever shown twice."""
        parent = self.threads.parent_of(thread)
        hook = await self._webhook(parent) if parent is not None and self.config.webhooks else None
        payloads = render.stranger_payloads(item.text, item.label, webhook=hook is not None, extra=extra)
        memo = item.memo
        for index in range(memo.get("done", 0), len(payloads)):
            payload = payloads[index]
            if hook is not None:
                try:
                    await self._webhook_part(hook, thread, payload, memo)
                except _WebhookGone:
                    self.webhooks.pop(parent, None)  # type: ignore[arg-type]
                    await self.state.set(f"webhook:{parent}", None)
                    payload = render.stranger_payloads(item.text, item.label, webhook=False, extra=extra)[index]
                    await self.post_payload(thread, payload, f"{item.key}{index}")
            else:
                await self.post_payload(thread, payload, f"{item.key}{index}")
            memo.clear()
            memo["done"] = index + 1

    async def post_payload(self, thread: int, payload: dict, nonce: str) -> None:
        assert self.client is not None
        body = {**payload, "nonce": nonce, "enforce_nonce": True}
        try:
            data = await self.client.http.request(
                Route("POST", "/channels/{channel_id}/messages", channel_id=thread), json=body, timeout=self.timeout
            )
            self.saw(thread, int(data["id"]))
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

    async def _webhook_part(self, hook: tuple[int, str], thread: int, payload: dict, memo: dict) -> None:
        """POST one message through the webhook. Webhook calls carry no nonce (Discord ignores one),
        so when an earlier attempt may have been stored (5xx, reset, timeout) the thread is read
        back first, looking for it after the newest message known before the first attempt."""
        assert self.session is not None
        if "before" not in memo:
            memo["before"] = await self._newest(thread)
        maybe = memo.get("maybe", False)
        if maybe and await self._stored(thread, hook[0], payload, memo["before"]):
            return
        memo["maybe"] = True  # from here until an answer says otherwise, it may be stored
        url = f"{Route.BASE}/webhooks/{hook[0]}/{hook[1]}"
        params = {"thread_id": str(thread), "wait": "true"}
        async with self.session.post(url, params=params, json=payload) as resp:
            status = resp.status
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
        if status < 300:
            self.saw(thread, int((data or {}).get("id", 0)))
            return
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

    async def _stored(self, thread: int, webhook_id: int, payload: dict, before: int) -> bool:
        assert self.client is not None
        route = Route("GET", "/channels/{channel_id}/messages", channel_id=thread)
        recent = await self.client.http.request(route, params={"after": before, "limit": 100}, timeout=self.timeout)
        for m in recent:
            if (
                str(m.get("webhook_id")) == str(webhook_id)
                and (m.get("content") or "").strip() == payload["content"].strip()  # Discord trims
                and m.get("author", {}).get("username") == payload.get("username")
            ):
                self.saw(thread, int(m["id"]))
                return True
        return False
