"""`!stranger-admin` in the management room: ban, unban, strikes, stats, policy; power level 50 checked on every call."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nio import RoomGetStateResponse

from bridge.policy.subjects import SubjectError, subject_key
from bridge.policy.timespan import format_duration, parse_duration

from .moderation import ADMIN_BY, ADMIN_LEVEL, power_level

if TYPE_CHECKING:
    from .platform import MatrixPlatform

__all__ = ["ADMIN_BY", "Admin", "subject_of"]

log = logging.getLogger(__name__)



def subject_of(arg: str) -> str:
    """The core's subject key of an mxid ("@user:server") or a server glob ("*.example.org", "*:example.org")."""
    if arg.startswith("@"):
        return subject_key(f"matrix:{arg}")
    server = arg.partition(":")[2] if ":" in arg else arg
    return subject_key(f"matrix:*:{server}")


class Admin:
    """Runs admin commands; every answer is an m.notice in the room the command came from."""

    def __init__(self, host: MatrixPlatform) -> None:
        self.host = host
        self.prefix = f"{host.cfg.command_prefix}-admin"
        self._with_args = self.prefix + " "

    def is_command(self, body: str) -> bool:
        return body == self.prefix or body.startswith(self._with_args)

    async def handle(self, rid: str, sender: str, body: str) -> None:
        mod = self.host.moderation
        if rid != mod.management or mod.management is None:
            await self.host.notice(rid, None, "Admin commands are only accepted in the bridge's management room.")
            return
        if await self._level(rid, sender) < ADMIN_LEVEL:
            await self.host.notice(rid, None, f"Admin commands need power level {ADMIN_LEVEL} in this room; nothing was changed.")
            return
        words = body[len(self.prefix):].split()
        name, args = (words[0].lower(), words[1:]) if words else ("help", [])
        moderator = self.host.moderator
        if moderator is None:
            await self.host.notice(rid, None, "Moderation is not running in this bridge; nothing was changed.")
            return
        try:
            match name:
                case "ban" if args:
                    answer = await self._ban(args)
                case "unban" if len(args) == 1:
                    key = subject_of(args[0])
                    found = await moderator.sanctions.unban(key, by=ADMIN_BY)
                    answer = f"Unbanned {args[0]}." if found else f"{args[0]} was not banned."
                    if found:
                        await _mod_post(self.host, f"Admin: {args[0]} unbanned by a moderator.")
                case "strikes" if len(args) == 1:
                    answer = await self._strikes(args[0])
                case "stats":
                    answer = await self._stats()
                case "policy":
                    answer = self._policy()
                case _:
                    answer = (f"Usage: {self.prefix} ban <@user:server|server glob> [duration] [reason] | "
                              "unban <@user:server|server glob> | strikes <@user:server> | stats | policy")
        except (SubjectError, ValueError) as exc:
            answer = f"Not done: {exc}"
        await self.host.notice(rid, None, answer)

    async def _level(self, rid: str, sender: str) -> int:
        client = self.host.client
        assert client is not None
        resp = await client.room_get_state(rid)  # read on every command: levels change
        if not isinstance(resp, RoomGetStateResponse):
            log.warning("matrix: the management room's power levels could not be read; admin command refused")
            return -1
        found = {ev.get("type"): ev for ev in resp.events if isinstance(ev, dict) and ev.get("state_key") == ""}
        levels = found.get("m.room.power_levels", {}).get("content")
        return power_level(levels if isinstance(levels, dict) else {}, sender, found.get("m.room.create"))

    async def _ban(self, args: list[str]) -> str:
        target, rest = args[0], args[1:]
        key = subject_of(target)
        duration: float | None = None
        if rest:
            try:
                duration = parse_duration(rest[0])
                rest = rest[1:]
            except ValueError:
                duration = None  # no duration given: the words are the reason
        reason = " ".join(rest)
        assert self.host.moderator is not None
        await self.host.moderator.sanctions.ban(key, duration, reason, by=ADMIN_BY)
        span = f"for {format_duration(duration)}" if duration is not None else "until unbanned"
        await _mod_post(self.host, f"Admin: {target} banned {span} by a moderator." + (f" Reason: {reason}" if reason else ""))
        return f"Banned {target} {span}." + (f" Reason: {reason}" if reason else "")

    async def _strikes(self, target: str) -> str:
        if not target.startswith("@"):
            raise ValueError("strikes are kept per user: give an mxid (@user:server)")
        key = subject_of(target)
        assert self.host.moderator is not None
        sanctions = self.host.moderator.sanctions
        for subject, ban, strikes in await sanctions.listing():
            if subject == key:
                banned = ""
                if ban is not None:
                    left = "until unbanned" if ban.until is None else f"for {format_duration(ban.until - sanctions.clock())} more"
                    banned = f", banned {left}"
                return f"{target}: {strikes} strikes{banned}."
        return f"{target}: no strikes, not banned."

    async def _stats(self) -> str:
        assert self.host.moderator is not None
        listing = await self.host.moderator.sanctions.listing()
        bans = sum(1 for _, ban, _ in listing if ban is not None)
        struck = sum(1 for _, _, strikes in listing if strikes)
        users, servers = self.host.moderation.lists.counts()
        return (f"Live Matrix chats: {len(self.host.rooms.active)}. Bans in force: {bans}; users with strikes: {struck}. "
                f"Policy lists followed: {len(self.host.moderation.policy_rooms)} "
                f"({users} user and {servers} server bans).")

    def _policy(self) -> str:
        assert self.host.moderator is not None
        p = self.host.moderator.policy
        cfg = self.host.cfg
        layer = p.platforms.get(self.host.name)
        lists = {**p.lists, **(layer.lists if layer is not None else {})}
        shown = ", ".join(f"{name} ({c.action})" for name, c in lists.items() if c.enabled) or "none"
        links = (layer.links if layer is not None and layer.links is not None else p.links)
        invites = (layer.invites if layer is not None and layer.invites is not None else p.invites)
        return (f"Word lists: {shown}. Links: {links.value}; invites: {invites.value}. "
                f"Strike after {p.report_threshold:g} weighted reports within {format_duration(p.report_window)}; "
                f"ban steps {', '.join(format_duration(s) for s in p.ban_steps)}. "
                f"Starts: at most {p.max_starts} per {format_duration(p.start_window)}, "
                f"cooldown {format_duration(p.start_cooldown)}. "
                f"Matrix: at most {cfg.max_sessions_per_user} live chats per user; "
                f"{len(self.host.moderation.policy_rooms)} policy lists; "
                f"report lines in the log: {self.host.moderation.keep or 'off'}.")


async def _mod_post(host: MatrixPlatform, text: str) -> None:
    await host.moderation.post(text)
