"""The outbox's Sender for Matrix: events, typing and ghost leaves as requests, with stable transaction ids."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nio import AsyncClient, RoomGetStateEventResponse, RoomSendResponse
from nio.api import MATRIX_API_PATH_V3, Api
from nio.responses import ErrorResponse, RoomLeaveResponse, RoomRedactResponse

from bridge.delivery import Item, Permanent, RateLimited, merge_marker

from . import render
from .config import MatrixConfig
from .login import REFUSED_TOKEN
from .rooms import RoomState, SessionRoom
from .txn import TxnIds

__all__ = [
    "GhostLeave",
    "GhostTyping",
    "Post",
    "RoomSender",
    "SendFailed",
    "Sent",
    "Write",
    "classify_response",
    "encryption_state",
    "leave_with_reason",
    "redact",
    "send_plain",
]

log = logging.getLogger(__name__)


class Sent:
    """What one request did."""

    OK = "ok"
    LIMITED = "limited"  # 429: not stored; retry after `retry_after`
    TRANSIENT = "transient"  # timeout, connection error, 5xx: maybe stored; retry with the same txn
    FATAL = "fatal"  # 4xx: will never work (not in the room, forbidden)

    def __init__(self, kind: str, retry_after: float = 0.0, error: str = "", event_id: str = "") -> None:
        self.kind = kind
        self.retry_after = retry_after
        self.error = error
        self.event_id = event_id  # the event a successful send or redaction made


class SendFailed(Exception):
    """A request that may have been stored (timeout, connection error, 5xx): the outbox retries it."""


def _raise_for(result: Sent) -> None:
    """The outbox's exceptions for a failed request; nothing for a success."""
    if result.kind == Sent.LIMITED:
        raise RateLimited(result.retry_after)
    if result.kind == Sent.TRANSIENT:
        raise SendFailed(result.error)
    if result.kind == Sent.FATAL:
        raise Permanent(result.error)


@dataclasses.dataclass(slots=True)
class Write:
    """One request: a content (with its txn id), a redaction, a typing state, or a ghost leaving; `sender` None is the bot."""

    content: dict[str, Any] | None = None
    thread: str | None = None
    txn: str = ""
    typing: bool | None = None
    sender: str | None = None
    leave: bool = False
    kind: str = "m.room.message"  # the event type of `content` (m.reaction for a reaction)
    redacts: str | None = None  # set: redact this event (with `txn`) instead of sending `content`


@dataclasses.dataclass(frozen=True, slots=True)
class Post:
    """An outbox payload: a bridge notice; `covers` > 0 when it tells about that many lost stranger messages."""

    content: dict[str, Any]
    covers: int = 0


async def leave_with_reason(client: AsyncClient, rid: str, reason: str) -> Any:
    """POST /rooms/{rid}/leave with a `reason` body: nio's `room_leave` cannot send one.

    Like `redact` and `send_plain`, one of this module's calls of nio's private `AsyncClient._send`
    (it parses the answer into nio's response type like the public methods do). Returns a
    RoomLeaveResponse or an ErrorResponse; raises what the transport raises.
    """
    method, path = Api.room_leave(client.access_token, rid)
    return await client._send(RoomLeaveResponse, method, path, json.dumps({"reason": reason}))


class RoomSender:
    """Implements `bridge.delivery.Sender` for session rooms: as the bot, or in ghost mode as the speaking ghost.

    Never sends plaintext into an encrypted room. Each outbox item gets a transaction id of
    ours before its first attempt (parts of a long text derive theirs from it), so a retry after
    a timeout is stored once.
    """

    def __init__(
        self,
        cfg: MatrixConfig,
        rooms: RoomState,
        txn: TxnIds,
        on_encrypted: Callable[[str], Awaitable[None]],
        on_told: Callable[[SessionRoom, int], None],
        on_token_refused: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.rooms = rooms
        self.txn = txn
        self.on_encrypted = on_encrypted  # a room turned out to be encrypted: end its chats and leave
        self.on_told = on_told  # a "not delivered" notice went out: (session room, messages it covers)
        self.on_token_refused = on_token_refused  # the homeserver refused our token: (its error code)
        self.stats: collections.Counter[str] = collections.Counter()  # request results by kind, for tests and status
        self.client: AsyncClient | None = None  # set once logged in
        self.ghosts: Any = None  # plugins.matrix.ghosts.Ghosts in ghost mode
        # The rich relay (plugins.matrix.relay.Relay): told of each text part posted, and sends
        # every payload that is not a notice (replies, images, edits, redactions, reactions).
        self.relay: Any = None
        self.crypto: Any = None  # plugins.matrix.crypto.Crypto with encryption: encrypted rooms are written to

    # ---- bridge.delivery.Sender ------------------------------------------------------------------

    async def send_text(self, room: SessionRoom, item: Item) -> None:
        """Stranger text (maybe merged): attributed by the bot, or plain from its ghost (`item.label`)."""
        if not item.key.startswith(TxnIds.PREFIX):  # (TxnIds.ours and _own_key inlined, mostly without a coroutine: every message)
            item.key = self.txn.take_reserved() or await self.txn.take()
        if self.ghosts is not None:
            ghost = item.label
            label = self.ghosts.labels.get(ghost, "Stranger")
            contents = render.ghost_message(item.text, merge_marker(item.count, label) if item.count > 1 else None)
        else:
            ghost = None
            contents = render.message(item.text, item.label, item.marker)
        memo = item.memo
        for part in range(memo.get("parts_sent", 0), len(contents)):
            txn = item.key if len(contents) == 1 else f"{item.key}.{part}"
            sent = await self.write(room.room, Write(contents[part], room.root, txn, sender=ghost))
            memo["parts_sent"] = part + 1
            if self.relay is not None:
                self.relay.text_posted(room, item, part, sent.event_id, ghost)

    async def send_payload(self, room: SessionRoom, item: Item) -> None:
        """A bridge notice from the bot, or a rich-relay payload (a reply, an image, an edit, ...)."""
        await self._own_key(item)
        post = item.payload
        if not isinstance(post, Post):
            await self.relay.send(room, item)
            return
        await self.write(room.room, Write(content=post.content, thread=room.root, txn=item.key))
        if post.covers:
            self.on_told(room, post.covers)

    async def send_typing(self, room: SessionRoom, on: bool) -> None:
        """The bot's typing state in the room (Matrix typing is per room, not per thread)."""
        await self.write(room.room, Write(typing=on))

    async def _own_key(self, item: Item) -> None:
        if not TxnIds.ours(item.key):
            item.key = await self.txn.take()

    # ---- requests ------------------------------------------------------------------------------

    async def write(self, rid: str, write: Write) -> Sent:
        """One request, its result when it worked; raises the outbox's Permanent / RateLimited, or SendFailed to be retried."""
        result = await self.request(rid, write)
        kind = result.kind
        self.stats[kind] += 1
        if kind != Sent.OK:
            if kind == Sent.FATAL and result.error in REFUSED_TOKEN:
                self.on_token_refused(result.error)
            _raise_for(result)
        return result

    async def request(self, rid: str, write: Write) -> Sent:
        """One request for one write, as its result."""
        if write.leave and self.ghosts is not None:
            # A ghost leaving sends no content: it goes out even where the bot left or saw encryption.
            return await self.ghosts.send(rid, write)
        if self.rooms.closed(rid):
            return Sent(Sent.FATAL, error="room encrypted or left")
        client = self.client
        assert client is not None
        if self.crypto is not None:
            # nio encrypts in rooms it knows are encrypted (typing is ephemeral: never encrypted, per the spec).
            unready = await self.crypto.prepare_send(client, rid)
            if unready is not None:
                return unready
        nio_room = client.rooms.get(rid)
        if self.crypto is None and nio_room is not None and nio_room.encrypted:
            await self.on_encrypted(rid)
            return Sent(Sent.FATAL, error="room is encrypted")
        if self.crypto is None and rid not in self.rooms.plaintext:
            # Invite state may not show encryption, and after a restart nio knows no room state:
            # ask the server once per room before the first plaintext event goes out.
            encrypted = await encryption_state(client, rid)
            if isinstance(encrypted, Sent):
                return encrypted
            if encrypted:
                await self.on_encrypted(rid)
                return Sent(Sent.FATAL, error="room is encrypted")
            self.rooms.plaintext.remember(rid)
        if write.sender is not None and self.ghosts is not None:
            return await self.ghosts.send(rid, write)
        try:
            if write.typing is not None:
                resp = await client.room_typing(rid, write.typing, timeout=int(self.cfg.typing_timeout * 1000))
            elif write.redacts is not None:
                resp = await redact(client, rid, write.redacts, write.txn)
            else:
                content = write.content
                assert content is not None
                if write.thread is not None:  # (render.wire leaves a content out of a thread as it is)
                    content = render.wire(content, write.thread)
                if self.crypto is None:
                    resp = await send_plain(client, rid, write.kind, content, write.txn)
                else:
                    await self.crypto.before_send(client, rid)
                    # ignore_unverified_devices: the trust policy (plugins.matrix.crypto) decided who gets keys.
                    resp = await client.room_send(rid, write.kind, content, tx_id=write.txn, ignore_unverified_devices=True)
                    self.crypto.sent(client, rid)  # the next room key, if this used it up: shared off the send path
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout or connection error: the event may or may not be stored
            return Sent(Sent.TRANSIENT, error=type(exc).__name__)
        return classify_response(resp)

    async def leave(self, rid: str, reason: str) -> None:
        """Leave (or refuse an invite to) a room, with a reason its members can read. Best effort."""
        assert self.client is not None
        try:
            resp = await leave_with_reason(self.client, rid, reason)
        except Exception as exc:  # noqa: BLE001 - the room is marked gone anyway
            log.warning("matrix: leaving a room failed: %r", exc)
            return
        if isinstance(resp, ErrorResponse):
            log.warning("matrix: leaving a room failed: %s", resp.message)


@functools.lru_cache(maxsize=4096)
def _send_path(rid: str, kind: str) -> str:
    """The path of a room's sends of one event type, up to the transaction id (quoted as nio's `Api` does)."""
    return f"{MATRIX_API_PATH_V3}/rooms/{quote(rid, safe='')}/send/{quote(kind, safe='')}/"


async def send_plain(client: AsyncClient, rid: str, kind: str, content: dict[str, Any], txn: str) -> Any:
    """PUT /rooms/{rid}/send/{kind}/{txn}: what nio's `room_send` does in a room without encryption, with
    the room's path quoted once, not for every message (nio's `Api.room_send` also builds an access-token
    query that `_send` parses away again). A RoomSendResponse or an ErrorResponse, or what the transport raises."""
    path = _send_path(rid, kind) + quote(txn, safe="")
    return await client._send(RoomSendResponse, "PUT", path, Api.to_json(content), response_data=(rid,))


async def redact(client: AsyncClient, rid: str, event_id: str, txn: str) -> Any:
    """PUT /rooms/{rid}/redact/{event}/{txn} with no reason and empty m.mentions (nio's `room_redact`
    cannot send the latter); a RoomRedactResponse or an ErrorResponse, or what the transport raises."""
    method, path, _ = Api.room_redact(client.access_token, rid, event_id, txn)
    return await client._send(RoomRedactResponse, method, path, json.dumps(render.redaction()), response_data=(rid,))


class GhostTyping:
    """`bridge.delivery.Sender` of one ghost's typing state in one room (ghost mode: typing is per ghost)."""

    def __init__(self, sender: RoomSender) -> None:
        self.sender = sender

    async def send_typing(self, room: tuple[str, str], on: bool) -> None:
        """The ghost's typing state; a ghost that never joined has nothing to clear."""
        rid, ghost = room
        await self.sender.write(rid, Write(typing=on, sender=ghost))

    async def send_text(self, room: tuple[str, str], item: Item) -> None:
        raise Permanent("a typing outbox carries no text")

    async def send_payload(self, room: tuple[str, str], item: Item) -> None:
        raise Permanent("a typing outbox carries no payload")


@dataclasses.dataclass(frozen=True, slots=True)
class GhostLeave:
    """An ordered outbox call: a ghost whose chat ended leaves the room (after the notices before it)."""

    sender: RoomSender
    rid: str
    ghost: str

    async def __call__(self) -> None:
        await self.sender.write(self.rid, Write(leave=True, sender=self.ghost))


async def encryption_state(client: AsyncClient, rid: str) -> bool | Sent:
    """Whether the server says the room is encrypted (its m.room.encryption state); a failed request as Sent."""
    try:
        state = await client.room_get_state_event(rid, "m.room.encryption")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001
        return Sent(Sent.TRANSIENT, error=type(exc).__name__)
    if isinstance(state, RoomGetStateEventResponse):
        return True
    if str(getattr(state, "status_code", "")) != "M_NOT_FOUND":
        return classify_response(state) if isinstance(state, ErrorResponse) else Sent(Sent.TRANSIENT)
    return False


_POSTED = (RoomSendResponse, RoomRedactResponse)  # (a tuple: `A | B` would make a union at every call)


def classify_response(resp: Any) -> Sent:
    """What a nio response means for the outbox."""
    if isinstance(resp, _POSTED):
        return Sent(Sent.OK, event_id=resp.event_id)
    if not isinstance(resp, ErrorResponse):
        return Sent(Sent.OK)
    status = str(resp.status_code or "")
    if status in ("M_LIMIT_EXCEEDED", "429"):
        return Sent(Sent.LIMITED, retry_after=(resp.retry_after_ms or 1000) / 1000)
    transport = getattr(resp, "transport_response", None)
    code = getattr(transport, "status", 0) or 0
    if code >= 500 or code == 0 and not status.startswith("M_"):
        return Sent(Sent.TRANSIENT, error=status or str(code))
    return Sent(Sent.FATAL, error=status or str(code))
