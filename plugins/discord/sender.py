"""The outbox's Sender for Discord: stranger text through the channel webhook, notices from the bot, typing."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import discord
from discord.http import Route

from bridge.abc import KeyValue
from bridge.outbox import Item, Permanent

from . import render
from .config import DiscordConfig
from .threads import Threads

__all__ = ["DiscordSender", "WEBHOOK_NAME"]

log = logging.getLogger(__name__)

WEBHOOK_NAME = "stranger-bridge"


class _WebhookGone(Exception):
    """The webhook was deleted: forget it and fall back to bot messages for this message."""


class DiscordSender:
    """Posts to session threads: webhook messages (no nonce: read back after a 5xx), bot messages with a nonce."""

    def __init__(self, config: DiscordConfig, state: KeyValue, threads: Threads) -> None:
        self.config = config
        self.state = state
        self.threads = threads
        self.client: discord.Client | None = None  # set when the platform runs
        self.session: aiohttp.ClientSession | None = None  # webhook calls
        self.webhooks: dict[int, tuple[int, str]] = {}  # parent channel -> (webhook id, token)
        self.no_webhook: set[int] = set()
        self.newest: dict[int, int] = {}  # newest message id known per thread (webhook 5xx check)

    # ---- the outbox's Sender -----------------------------------------------------------------

    async def send_text(self, thread: int, item: Item) -> None:
        marker = item.marker
        await self.post_text(thread, item.label, item.text, render.merge_note(marker) if marker else None, item.key)

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

    async def post_text(self, thread: int, label: str | None, text: str, extra: str | None, nonce: str) -> None:
        info = self.threads.get(thread)
        parent = info.parent if info else None
        hook = await self._webhook(parent) if parent is not None and self.config.webhooks else None
        payloads = render.stranger_payloads(text, label, webhook=hook is not None, extra=extra)
        for index, payload in enumerate(payloads):
            part_nonce = f"{nonce}{index}"
            if hook is not None:
                try:
                    await self._execute_webhook(hook, thread, payload)
                    continue
                except _WebhookGone:
                    self.webhooks.pop(parent, None)  # type: ignore[arg-type]
                    await self.state.set(f"webhook:{parent}", None)
                    payload = render.stranger_payloads(text, label, webhook=False, extra=extra)[index]
            await self.post_payload(thread, payload, part_nonce)

    async def post_payload(self, thread: int, payload: dict, nonce: str) -> None:
        assert self.client is not None
        body = {**payload, "nonce": nonce, "enforce_nonce": True}
        try:
            data = await self.client.http.request(
                Route("POST", "/channels/{channel_id}/messages", channel_id=thread), json=body
            )
            self.saw(thread, int(data["id"]))
        except (discord.NotFound, discord.Forbidden) as exc:
            raise Permanent(str(exc)) from exc

    async def post_typing(self, thread: int) -> None:
        assert self.client is not None
        await self.client.http.request(Route("POST", "/channels/{channel_id}/typing", channel_id=thread))

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

    async def _execute_webhook(self, hook: tuple[int, str], thread: int, payload: dict) -> None:
        """POST through the webhook. Webhook calls carry no nonce, so after a 5xx the thread is read
        back first: if the message was stored, it is not sent again."""
        assert self.session is not None
        url = f"{Route.BASE}/webhooks/{hook[0]}/{hook[1]}"
        params = {"thread_id": str(thread), "wait": "true"}
        before = self.newest.get(thread, 0)  # our previous message here: anything newer is this one
        for attempt in range(5):
            async with self.session.post(url, params=params, json=payload) as resp:
                status = resp.status
                data = await resp.json(content_type=None) if resp.content_length != 0 else None
            if status < 300:
                self.saw(thread, int((data or {}).get("id", 0)))
                return
            if status == 429:
                await asyncio.sleep(float((data or {}).get("retry_after", 1.0)))
                continue
            if status == 404:
                raise _WebhookGone()
            if status == 403:
                raise Permanent(f"webhook refused: {status}")
            if status >= 500:
                if await self._stored(thread, hook[0], payload, before):
                    return
                await asyncio.sleep(0.5 + attempt)
                continue
            raise Permanent(f"webhook answered {status}")
        raise ConnectionError("webhook kept failing")

    async def _stored(self, thread: int, webhook_id: int, payload: dict, before: int) -> bool:
        assert self.client is not None
        route = Route("GET", "/channels/{channel_id}/messages", channel_id=thread)
        recent = await self.client.http.request(route, params={"limit": 10})
        return any(
            int(m["id"]) > before
            and str(m.get("webhook_id")) == str(webhook_id)
            and m.get("content") == payload["content"]
            and m.get("author", {}).get("username") == payload.get("username")
            for m in recent
        )
