"""Matrix moderation glue: the management, policy-list and log rooms, start refusals, the session cap, chat lines."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from nio import JoinError, RoomGetStateEventResponse, RoomGetStateResponse

from bridge.hygiene import clean
from bridge.policy.logfollow import FOLLOW_EVERY, follow_log

from .policylists import PolicyLists

if TYPE_CHECKING:
    from .platform import MatrixPlatform

__all__ = ["ADMIN_BY", "ADMIN_LEVEL", "MatrixModeration", "power_level"]

log = logging.getLogger(__name__)

ADMIN_LEVEL = 50
ADMIN_BY = "matrix-admin"  # `by` of bans made with !stranger-admin (posted when made)
MOD_LOG_LINE = 300  # characters of one chat line in the moderation log


CREATOR_LEVEL = 2**53 - 1  # room version 12: creators rank above every power level
_OLD_VERSIONS = {str(n) for n in range(1, 12)}


def power_level(content: dict[str, Any], mxid: str, create: dict[str, Any] | None = None) -> int:
    """A user's power level from an m.room.power_levels content; `create` the m.room.create event.

    From room version 12 on, the room's creators are not listed in `users`: they outrank everyone.
    """
    if create is not None:
        body = create.get("content") if isinstance(create.get("content"), dict) else {}
        if str(body.get("room_version", "1")) not in _OLD_VERSIONS:
            extra = body.get("additional_creators") if isinstance(body.get("additional_creators"), list) else []
            if mxid == create.get("sender") or mxid in extra:
                return CREATOR_LEVEL
    users = content.get("users") if isinstance(content.get("users"), dict) else {}
    level = users.get(mxid, content.get("users_default", 0))
    return level if isinstance(level, int) and not isinstance(level, bool) else 0


class MatrixModeration:
    """What the Matrix platform adds to the core's moderation for its own rooms and users."""

    def __init__(self, host: MatrixPlatform) -> None:
        self.host = host
        self.cfg = host.cfg
        self.lists = PolicyLists()
        self.policy_rooms: set[str] = set()  # room ids of the followed policy lists (once joined)
        self.management: str | None = None  # room id of the management room (once joined)
        self.log_room: str | None = None  # room id of the moderation log room, when writable
        self.owners: dict[str, str] = {}  # session room id -> the mxid that last started there
        # Session rooms whose search or chat the core began (Waiting / Connected shown) and that
        # have not ended: a start the core refused (a ban, the throttle) never counts as a chat.
        self.live: set[str] = set()
        self.keep = min(self.cfg.mod_log_lines, 20) if self.cfg.mod_log_room else 0
        self.lines: dict[str, deque[tuple[str, str]]] = {}

    def special(self, rid: str) -> bool:
        """Rooms that are never session rooms: policy lists, the management and the log room."""
        return rid in self.policy_rooms or rid == self.management or rid == self.log_room

    # ---- start-up ------------------------------------------------------------------------------

    async def join_rooms(self) -> None:
        """Join the configured rooms; read each policy list's full state (later changes come by sync)."""
        cfg = self.cfg
        if cfg.management_room:
            self.management = await self._join(cfg.management_room, "management_room")
        for target in cfg.policy_rooms:
            rid = await self._join(target, "policy_rooms")
            if rid is not None:
                self.policy_rooms.add(rid)
                await self.reload(rid)
        if cfg.mod_log_room:
            await self._check_log_room()
        users, servers = self.lists.counts()
        if cfg.policy_rooms:
            log.info("matrix: following %d policy lists: %d user and %d server bans", len(self.policy_rooms), users, servers)

    async def _join(self, target: str, key: str) -> str | None:
        client = self.host.client
        assert client is not None
        resp = await client.join(target)
        if isinstance(resp, JoinError):
            log.error("matrix: %s %s cannot be joined (%s); it is not used", key, target, resp.message)
            return None
        self.host.rooms.joined(resp.room_id)
        return resp.room_id

    async def reload(self, rid: str) -> None:
        client = self.host.client
        assert client is not None
        resp = await client.room_get_state(rid)
        if isinstance(resp, RoomGetStateResponse):
            self.lists.load(rid, resp.events)
        else:
            log.warning("matrix: the state of a policy list could not be read; its rules come as they change")

    async def _check_log_room(self) -> None:
        """Say clearly at start-up when the moderation log room cannot be written; the platform runs on."""
        target = self.cfg.mod_log_room
        client = self.host.client
        assert client is not None and target is not None
        resp = await client.join(target)
        if isinstance(resp, JoinError):
            log.error("matrix: mod_log_room %s cannot be written: the bot cannot join it (%s). Reports and admin "
                      "actions are NOT posted to a moderation log; the platform runs on.", target, resp.message)
            return
        rid = resp.room_id
        levels = await client.room_get_state_event(rid, "m.room.power_levels")
        if isinstance(levels, RoomGetStateEventResponse):
            needed = (levels.content.get("events") or {}).get("m.room.message", levels.content.get("events_default", 0))
            if power_level(levels.content, self.cfg.user_id) < needed:
                log.error("matrix: mod_log_room %s cannot be written: the bot's power level is below %s. Reports and "
                          "admin actions are NOT posted to a moderation log; the platform runs on.", target, needed)
                return
        self.host.rooms.joined(rid)
        self.log_room = rid
        log.info("matrix: moderation log room is writable")

    # ---- starts --------------------------------------------------------------------------------

    async def start_refusal(self, mxid: str, sid: str) -> str | None:
        """Why `mxid` may not start in `sid` (a policy-list ban, the session cap), or None.

        Bans of the core's store (by mxid, or server glob via Start.server) are checked by the core.
        """
        rule = self.lists.banned(mxid)
        if rule is not None:
            reason = f" Reason: {clean(rule.reason)}." if rule.reason else ""
            return f"You are banned from starting chats on this bridge.{reason}"
        cap = self.cfg.max_sessions_per_user
        live = sum(1 for s, who in self.owners.items() if who == mxid and s != sid and s in self.live)
        if live >= cap:
            return f"You already have {live} chats running, the most this bridge allows. End one with {self.cfg.command_prefix} stop first."
        return None

    def invite_refusal(self, mxid: str) -> str | None:
        """Why an invite from `mxid` is refused because of a policy list, or None."""
        return "You are banned from this bridge." if self.lists.banned(mxid) is not None else None

    def started(self, sid: str, mxid: str) -> None:
        self.owners[sid] = mxid
        for stale in [s for s in self.owners if s not in self.host.rooms.active and s != sid]:
            del self.owners[stale]  # ended sessions: only live ones are counted and kept

    # ---- chat lines (only when mod_log_lines is on) --------------------------------------------

    def note(self, sid: str, who: str, text: str) -> None:
        if self.keep <= 0:
            return
        lines = self.lines.get(sid)
        if lines is None:
            lines = self.lines[sid] = deque(maxlen=self.keep)
        lines.append((who, text[:MOD_LOG_LINE]))

    def chat_began(self, sid: str) -> None:
        """A new search or chat in the session room: it counts as live; the last chat's lines
        belong to no later report."""
        self.live.add(sid)
        self.lines.pop(sid, None)

    def ended(self, sid: str) -> None:
        self.live.discard(sid)
        self.owners.pop(sid, None)

    # ---- the moderation log --------------------------------------------------------------------

    async def post(self, text: str) -> None:
        """One moderation log entry as a notice from the bot (m.mentions empty), when the room is writable."""
        if self.log_room is not None:
            await self.host.notice(self.log_room, None, text)

    def follow(self, every: float = FOLLOW_EVERY) -> asyncio.Task | None:
        """Start following the core's log (reports made elsewhere, strikes, operator bans) into the
        log room; None when there is no writable log room or no core moderation."""
        moderator = self.host.moderator
        if self.log_room is None or moderator is None:
            return None

        async def post(entry: tuple[str, str]) -> None:
            await self.post("".join(entry))

        return asyncio.get_running_loop().create_task(
            follow_log(moderator.sanctions, self.host.state, post, own=("matrix:", ADMIN_BY), every=every),
            name="matrix moderation log",
        )

    async def reported(self, sid: str) -> None:
        """A Matrix user reported their stranger: logged with the chat's last lines only when enabled."""
        text = "Report: a Matrix user reported the stranger of their chat."
        lines = list(self.lines.pop(sid, ()))
        if lines:
            shown = "\n".join(f"{clean(who)}: {clean(line)}" for who, line in lines)
            text += f"\nLast {len(lines)} lines:\n{shown}"
        await self.post(text)

    def report_lines(self) -> int | None:
        """Lines of a chat a report shares (0: none), or None when there is no writable moderation log."""
        return None if self.log_room is None else self.keep

    def report_confirmation(self) -> str | None:
        """What the reporter is told about the moderation log (None: there is none)."""
        if self.log_room is None:
            return None
        if self.keep:
            return f"Your report went to the moderators with the last {self.keep} lines of this chat at most."
        return "Your report went to the moderators, without any lines of this chat."
