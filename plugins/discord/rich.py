"""Stranger edits, deletions and reactions in a thread: which Discord messages show each stranger line, and the calls that change them."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord
from discord.http import Route

from bridge.dedupe import SeenIds
from bridge.events import Edit, Posted, Reaction, Retract, Room
from bridge.delivery import Item, Permanent, RateLimited

from . import render
from .lines import Line

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["Block", "PENDING_REACTIONS", "ReactionFlush", "Rich"]

log = logging.getLogger(__name__)

PENDING_REACTIONS = 64  # reaction changes one thread may have waiting; more are dropped (they are no messages)
UNKNOWN_MESSAGE = 10008


@dataclass(slots=True)
class Block:
    """The Discord messages (one per part) showing one posted text item, and the stranger lines
    in it (several when the outbox merged them); a line edited or deleted re-renders the block."""

    thread: int
    label: str | None
    ids: list[int]
    texts: list[str | None]
    quote: str | None = None
    webhook: bool = True
    unknown: bool = False  # recalled after a restart: the texts of lines merged into it are not known

    def text(self) -> str:
        return "\n".join(t for t in self.texts if t is not None)


@dataclass(slots=True)
class ReactionFlush:
    """The outbox item that puts the thread's waiting reaction changes on their messages."""

    thread: int


@dataclass(slots=True)
class _Change:
    """An edit or a deletion of a stranger line, queued in order with the thread's posts."""

    ref: str
    text: str | None  # None: delete
    label: str | None


@dataclass(slots=True)
class _Reactions:
    waiting: OrderedDict[tuple[int, str, str], bool] = field(default_factory=OrderedDict)  # (message, emoji, who) -> add
    queued: bool = False


class Rich:
    """Posted ids for the core, and stranger edits, deletions and reactions shown in threads."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host
        self.blocks: SeenIds[str, tuple[Block, int]] = SeenIds(host.remember)  # posted id -> (block, line)
        self.parts: SeenIds[int, int] = SeenIds(host.remember)  # a later part's message id -> the first part's
        self.ours: SeenIds[int, None] = SeenIds(host.remember)  # messages the bridge deleted itself
        self.reacted: SeenIds[tuple[int, str], set[str]] = SeenIds(host.remember)  # who wants our reaction
        self.reactions: dict[int, _Reactions] = {}

    # ---- posted lines ------------------------------------------------------------------------

    def posted(self, thread: int, item: Item, lines: list[Line], ids: list[int]) -> None:
        """A text item is shown as messages `ids`: remember them and tell the core each line's id."""
        if not ids:
            return
        texts: list[str | None] = [line.text for line in lines] if len(lines) > 1 else [item.text]
        block = Block(thread, item.label, list(ids), texts, quote=lines[0].quote if len(lines) == 1 else None,
                      webhook=bool(item.memo.get("webhook")))
        for later in ids[1:]:
            self.parts.remember(later, ids[0])
        info = self.host.threads.get(thread)
        if info is not None and (len(ids) > 1 or len(texts) > 1):
            info.keep_shown(ids[0], len(texts), list(ids[1:]))
            self.host.threads.persist(info)
        room = Room(self.host.name, str(thread))
        for index, line in enumerate(lines or [Line(None)]):
            pid = str(ids[0]) if index == 0 else f"{ids[0]}:{index}"
            self.blocks.remember(pid, (block, index))
            if line.ref is not None:
                self.host.submit(room, Posted(line.ref, pid))

    def is_ours(self, mid: int) -> bool:
        """A message showing a stranger line (its deletion by a moderator is no user's retraction)."""
        return str(mid) in self.blocks or mid in self.parts

    def message_of(self, mid: int, thread: int | None = None) -> str:
        """The id the core knows for a Discord message a user acts on (a later part: its first)."""
        first = self.parts.get(mid)
        if first is None and thread is not None and (info := self.host.threads.get(thread)) is not None:
            first = next((int(k) for k, v in info.shown.items() if mid in v[1:]), None)  # after a restart
        return str(first or mid)

    # ---- delivery (queued in order on the thread's outbox) ------------------------------------

    def deliver(self, thread: int, event: Edit | Retract | Reaction) -> None:
        box = self.host.outboxes.get(thread)
        match event:
            case Edit(ref=ref, text=text, stranger=label):
                box.put_payload(_Change(ref, text, label), notify=False)
            case Retract(ref=ref, stranger=label):
                box.put_payload(_Change(ref, None, label), notify=False)
            case Reaction(ref=ref, emoji=emoji, add=add, stranger=label):
                emoji_ok = render.reaction_emoji(emoji)
                head = ref.partition(":")[0]
                if emoji_ok is None or not head.isdigit():
                    return  # not an emoji Discord can show, or not one of our ids: nothing to do
                state = self.reactions.setdefault(thread, _Reactions())
                key = (int(head), emoji_ok, label or "Stranger")
                if key not in state.waiting and len(state.waiting) >= PENDING_REACTIONS:
                    log.debug("thread %s: too many reaction changes waiting; one dropped", thread)
                    return
                state.waiting[key] = add
                state.waiting.move_to_end(key)
                if not state.queued:
                    state.queued = True
                    box.put_payload(ReactionFlush(thread), notify=False)

    async def send(self, thread: int, item: Item) -> None:
        """Run one queued change (the outbox's send_payload for non-dict payloads)."""
        match item.payload:
            case _Change(ref=ref, text=text, label=label):
                await self._change(thread, ref, text, label)
            case ReactionFlush():
                await self._flush(thread)

    def release(self, thread: int) -> None:
        self.reactions.pop(thread, None)

    # ---- pictures ----------------------------------------------------------------------------

    async def pictures_on(self, thread: int) -> bool:
        """Pictures are shown when the operator switched them on and, in a server, its admins too."""
        if not self.host.config.images:
            return False
        info = self.host.threads.get(thread)
        guild = info.guild if info is not None else None
        return guild is None or (await self.host.guilds.settings(guild)).images

    async def screen(self, thread: int, item: Item, lines: list[Line]) -> list[Line]:
        """Take the pictures off lines where pictures are off, saying so in the thread."""
        if not any(line.picture for line in lines) or await self.pictures_on(thread):
            return lines
        who = item.label or "Stranger"
        self.host.outboxes.get(thread).put_payload(
            render.text_notice(f"{who} sent a picture; pictures are off here, so it is not shown."), notify=False, first=True)
        kept = [Line(line.ref, line.text, line.quote) for line in lines]
        item.memo["lines"] = kept
        return kept

    # ---- edits and deletions -----------------------------------------------------------------

    async def _change(self, thread: int, ref: str, text: str | None, label: str | None) -> None:
        found = self.blocks.get(ref) or await self._recalled(thread, ref, text, label)
        if found is None:
            return  # a line the map no longer holds: ignored, as the core does
        block, index = found
        if not any(t is not None for t in block.texts) and not block.ids:
            return  # deleted already: an edit racing the deletion changes nothing
        if block.unknown and text is not None:
            return  # after a restart the other lines merged with it are not known: not re-rendered
        block.texts[index] = text
        if all(t is None for t in block.texts):
            for mid in list(block.ids):
                await self._delete(block, mid)
                block.ids.remove(mid)
            return
        if block.unknown:
            return  # the other lines merged with it stay until they are deleted too
        payloads = render.edit_payloads(block.text(), block.label, webhook=block.webhook, parts=len(block.ids),
                                        quote=block.quote)
        for mid, payload in zip(list(block.ids), payloads):
            await self._edit(block, mid, payload)
        for mid in block.ids[len(payloads):]:
            await self._delete(block, mid)
        del block.ids[len(payloads):]

    async def _recalled(self, thread: int, ref: str, text: str | None, label: str | None) -> tuple[Block, int] | None:
        """The block of a line posted before a restart: its parts from the thread record (a line
        in one message needs nothing more)."""
        head, _, index = ref.partition(":")
        if not head.isdigit() or (index and not index.isdigit()):
            return None
        info = self.host.threads.get(thread)
        shape = info.shown.get(head) if info is not None else None
        lines, later = (shape[0], shape[1:]) if shape else (1, [])
        line = int(index or 0)
        if line >= lines:
            return None
        hook = await self.host.sender.hook_of(thread)
        texts: list[str | None] = [text] if lines == 1 else [""] * lines
        block = Block(thread, label, [int(head), *later], texts, webhook=hook is not None, unknown=lines > 1)
        for n in range(lines):
            self.blocks.remember(head if n == 0 else f"{head}:{n}", (block, n))
        return block, line

    async def _edit(self, block: Block, mid: int, payload: dict) -> None:
        if block.webhook and (hook := await self.host.sender.hook_of(block.thread)) is not None:
            path = f"/webhooks/{hook[0]}/{hook[1]}/messages/{mid}"
            if await self._webhook_call("PATCH", path, block.thread, payload):
                return
        await self._bot_call(Route("PATCH", "/channels/{channel_id}/messages/{message_id}",
                                   channel_id=block.thread, message_id=mid), json=payload)

    async def _delete(self, block: Block, mid: int) -> None:
        self.ours.remember(mid)
        if block.webhook and (hook := await self.host.sender.hook_of(block.thread)) is not None:
            if await self._webhook_call("DELETE", f"/webhooks/{hook[0]}/{hook[1]}/messages/{mid}", block.thread, None):
                return
        await self._bot_call(Route("DELETE", "/channels/{channel_id}/messages/{message_id}",
                                   channel_id=block.thread, message_id=mid))

    async def _webhook_call(self, method: str, path: str, thread: int, payload: dict | None) -> bool:
        """A webhook edit or delete; True when done (or the message is gone), False when the message
        is not the webhook's (a line the bot posted)."""
        session = self.host.sender.session
        assert session is not None
        async with session.request(method, Route.BASE + path, params={"thread_id": str(thread)}, json=payload) as resp:
            status = resp.status
            raw = await resp.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = None
        if status < 300:
            return True
        if status == 429:
            raise RateLimited(float((data or {}).get("retry_after", 1.0)))
        if status >= 500:
            raise ConnectionError(f"webhook answered {status}")  # an edit or delete is safe to repeat
        if status == 404 and (data or {}).get("code") == UNKNOWN_MESSAGE:
            return False
        if status == 404:
            await self.host.sender.forget_hook(thread)
            return False
        raise Permanent(f"webhook answered {status}")

    async def _bot_call(self, route: Route, **kwargs) -> None:
        client = self.host.client
        assert client is not None
        try:
            await client.http.request(route, timeout=self.host.sender.timeout, **kwargs)
        except discord.NotFound:
            pass  # deleted meanwhile: nothing left to change
        except discord.HTTPException as exc:
            if 400 <= exc.status < 500:  # forbidden, or refused (an emoji Discord does not know)
                raise Permanent(str(exc)) from exc
            raise

    # ---- reactions ---------------------------------------------------------------------------

    async def _flush(self, thread: int) -> None:
        state = self.reactions.get(thread)
        if state is None:
            return
        try:
            while state.waiting:
                # Taken off first: a change that comes while this one is sent waits as a new entry.
                (mid, emoji, who), add = state.waiting.popitem(last=False)
                wanting = self.reacted.get((mid, emoji)) or set()
                now = wanting | {who} if add else wanting - {who}
                if bool(now) != bool(wanting):
                    method = "PUT" if now else "DELETE"
                    try:
                        await self._bot_call(Route(method, "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                                                   channel_id=thread, message_id=mid, emoji=emoji))
                    except Permanent as exc:  # not allowed here, or Discord refused the emoji: this one only
                        log.info("thread %s: a reaction was refused (%s)", thread, type(exc).__name__)
                    except BaseException:
                        if (mid, emoji, who) not in state.waiting:  # retried with the item, unless superseded
                            state.waiting[(mid, emoji, who)] = add
                            state.waiting.move_to_end((mid, emoji, who), last=False)
                        raise
                self.reacted.remember((mid, emoji), now)
        finally:
            state.queued = False  # a retry of this item, or the next change, flushes what is left
