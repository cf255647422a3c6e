"""The outbox's sender: one request per outbox entry (text, typing, a ghost's leave), and leaving rooms with a reason."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nio import AsyncClient, RoomGetStateEventResponse, RoomSendResponse
from nio.api import Api
from nio.responses import ErrorResponse, RoomLeaveResponse

from . import render
from .config import MatrixConfig
from .outbox import Entry, Sent
from .rooms import RoomState

__all__ = ["RoomSender", "classify_response", "leave_with_reason"]

log = logging.getLogger(__name__)


async def leave_with_reason(client: AsyncClient, rid: str, reason: str) -> Any:
    """POST /rooms/{rid}/leave with a `reason` body: nio's `room_leave` cannot send one.

    The one place that uses nio's private `AsyncClient._send` (it parses the answer into nio's
    response type like the public methods do). Returns a RoomLeaveResponse or an ErrorResponse;
    raises what the transport raises.
    """
    method, path = Api.room_leave(client.access_token, rid)
    return await client._send(RoomLeaveResponse, method, path, json.dumps({"reason": reason}))


class RoomSender:
    """Sends outbox entries as the bot (or, in ghost mode, as the entry's ghost). Never sends into an encrypted room."""

    def __init__(
        self,
        cfg: MatrixConfig,
        rooms: RoomState,
        on_encrypted: Callable[[str], Awaitable[None]],
        stats: collections.Counter[str],
    ) -> None:
        self.cfg = cfg
        self.rooms = rooms
        self.on_encrypted = on_encrypted  # a room turned out to be encrypted: end its chats and leave
        self.stats = stats  # send results by kind, for tests and status
        self.client: AsyncClient | None = None  # set once logged in
        self.ghosts: Any = None  # plugins.matrix.ghosts.Ghosts in ghost mode

    async def send(self, rid: str, entry: Entry) -> Sent:
        """One request for one outbox entry."""
        if entry.leave and self.ghosts is not None:
            # A ghost leaving sends no content: it goes out even where the bot left or saw encryption.
            result = await self.ghosts.send(rid, entry)
            self.stats[result.kind] += 1
            return result
        if self.rooms.closed(rid):
            return Sent(Sent.FATAL, error="room encrypted or left")
        client = self.client
        assert client is not None
        nio_room = client.rooms.get(rid)
        if nio_room is not None and nio_room.encrypted:
            await self.on_encrypted(rid)
            return Sent(Sent.FATAL, error="room is encrypted")
        if rid not in self.rooms.plaintext:
            # Invite state may not show encryption, and after a restart nio knows no room state:
            # ask the server once per room before the first plaintext event goes out.
            try:
                state = await client.room_get_state_event(rid, "m.room.encryption")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                return Sent(Sent.TRANSIENT, error=type(exc).__name__)
            if isinstance(state, RoomGetStateEventResponse):
                await self.on_encrypted(rid)
                return Sent(Sent.FATAL, error="room is encrypted")
            if str(getattr(state, "status_code", "")) != "M_NOT_FOUND":
                return classify_response(state) if isinstance(state, ErrorResponse) else Sent(Sent.TRANSIENT)
            self.rooms.plaintext.remember(rid)
        if entry.sender is not None and self.ghosts is not None:
            result = await self.ghosts.send(rid, entry)
            self.stats[result.kind] += 1
            return result
        try:
            if entry.typing is not None:
                resp = await client.room_typing(rid, entry.typing, timeout=int(self.cfg.typing_timeout * 1000))
            else:
                assert entry.content is not None
                resp = await client.room_send(
                    rid, "m.room.message", render.wire(entry.content, entry.thread), tx_id=entry.txn
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout or connection error: the event may or may not be stored
            return Sent(Sent.TRANSIENT, error=type(exc).__name__)
        result = classify_response(resp)
        self.stats[result.kind] += 1
        return result

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


def classify_response(resp: Any) -> Sent:
    """What a nio response means for the outbox."""
    if isinstance(resp, RoomSendResponse) or not isinstance(resp, ErrorResponse):
        return Sent(Sent.OK)
    status = str(resp.status_code or "")
    if status in ("M_LIMIT_EXCEEDED", "429"):
        return Sent(Sent.LIMITED, retry_after=(resp.retry_after_ms or 1000) / 1000)
    transport = getattr(resp, "transport_response", None)
    code = getattr(transport, "status", 0) or 0
    if code >= 500 or code == 0 and not status.startswith("M_"):
        return Sent(Sent.TRANSIENT, error=status or str(code))
    return Sent(Sent.FATAL, error=status or str(code))
