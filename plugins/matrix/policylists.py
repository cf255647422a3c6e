"""Moderation policy lists (m.policy.rule.user / m.policy.rule.server with m.ban): parsed, kept current, matched."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from bridge.dedupe import SeenIds

__all__ = ["BanRule", "MalformedRule", "PolicyLists", "glob_regex", "parse_rule"]

log = logging.getLogger(__name__)

USER_RULE = "m.policy.rule.user"
SERVER_RULE = "m.policy.rule.server"
# The stable types, and the older ones Mjolnir and Draupnir still write.
RULE_TYPES = {
    USER_RULE: "user",
    "m.room.rule.user": "user",
    "org.matrix.mjolnir.rule.user": "user",
    SERVER_RULE: "server",
    "m.room.rule.server": "server",
    "org.matrix.mjolnir.rule.server": "server",
}
BAN = ("m.ban", "org.matrix.mjolnir.ban")
MAX_ENTITY = 255
_USER_GLOB = re.compile(r"@[^\s:]+:[A-Za-z0-9.*?\-\[\]:]+")
_SERVER_GLOB = re.compile(r"[A-Za-z0-9.*?\-\[\]:]+")
MAX_REASON = 200


class MalformedRule(ValueError):
    """A policy rule whose entity is missing, not text, or not a user / server glob."""


@dataclass(frozen=True, slots=True)
class BanRule:
    """One m.ban rule of a policy room: a user or server glob, with its reason."""

    kind: str  # "user" or "server"
    entity: str
    reason: str
    event_id: str
    pattern: re.Pattern[str]

    def matches(self, mxid: str) -> bool:
        if self.kind == "user":
            return self.pattern.fullmatch(mxid) is not None
        return self.pattern.fullmatch(mxid.partition(":")[2].lower()) is not None


def glob_regex(glob: str, *, fold: bool) -> re.Pattern[str]:
    """`*` any run, `?` one character, everything else literal (as policy lists define globs)."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return re.compile(body, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


def parse_rule(kind: str, content: Any, event_id: str) -> BanRule | None:
    """The ban rule of one rule event's content; None for an empty (removed) or non-ban rule.

    Raises MalformedRule for a ban whose entity is not a user glob ("@user:server") or a
    server glob.
    """
    if not isinstance(content, dict) or not content:
        return None  # a redacted or emptied rule: lifted
    if content.get("recommendation") not in BAN:
        return None
    entity = content.get("entity")
    if not isinstance(entity, str) or not entity or len(entity) > MAX_ENTITY:
        raise MalformedRule("the entity is missing or not a short text")
    shape = _USER_GLOB if kind == "user" else _SERVER_GLOB
    if not shape.fullmatch(entity):
        raise MalformedRule(f"the entity is not a {kind} glob")
    reason = content.get("reason")
    reason = reason.strip()[:MAX_REASON] if isinstance(reason, str) else ""
    entity = entity if kind == "user" else entity.lower()
    return BanRule(kind, entity, reason, event_id, glob_regex(entity, fold=kind == "server"))


class PolicyLists:
    """The ban rules of the followed policy rooms, by (room, event type, state key), as the state changes."""

    def __init__(self) -> None:
        self.rules: dict[tuple[str, str, str], BanRule] = {}
        self.ignored = 0  # malformed rules seen (each logged once)
        self._logged: SeenIds[str, None] = SeenIds(1000)  # malformed event ids already logged

    def apply(self, rid: str, ev: dict[str, Any]) -> None:
        """One event of a policy room: a rule set, changed or emptied, or a redaction of one."""
        kind = ev.get("type")
        if kind == "m.room.redaction":
            redacts = ev.get("redacts") or (ev.get("content") or {}).get("redacts")
            for key, rule in list(self.rules.items()):
                if key[0] == rid and rule.event_id == redacts:
                    del self.rules[key]
            return
        if kind not in RULE_TYPES or not isinstance(ev.get("state_key"), str):
            return
        key = (rid, RULE_TYPES[kind], ev["state_key"])
        try:
            rule = parse_rule(RULE_TYPES[kind], ev.get("content"), str(ev.get("event_id") or ""))
        except MalformedRule as exc:
            self.rules.pop(key, None)
            if self._logged.first_time(str(ev.get("event_id") or key)):
                self.ignored += 1
                log.warning("matrix: policy rule in %s ignored: %s", rid, exc)
            return
        if rule is None:
            self.rules.pop(key, None)
        else:
            self.rules[key] = rule

    def load(self, rid: str, state: list[dict[str, Any]]) -> None:
        """The full state of a policy room: its rules replace what was known of it."""
        for key in [k for k in self.rules if k[0] == rid]:
            del self.rules[key]
        for ev in state:
            if isinstance(ev, dict):
                self.apply(rid, ev)

    def banned(self, mxid: str) -> BanRule | None:
        """The first rule that bans `mxid` (by its id or its server), or None."""
        for rule in self.rules.values():
            if rule.matches(mxid):
                return rule
        return None

    def counts(self) -> tuple[int, int]:
        """(user rules, server rules) in force."""
        users = sum(1 for r in self.rules.values() if r.kind == "user")
        return users, len(self.rules) - users
