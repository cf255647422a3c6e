"""The one moderation entry point of the core: start checks, message checks both ways, reports, and their notices."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..events import Room
from ..store import Store, StoreError
from .config import PolicySection
from .rules import Action, ContentRules, Verdict
from .sanctions import ReportOutcome, Sanctions, ban_notice
from .throttle import StartThrottle, throttle_notice
from .timespan import format_duration

__all__ = ["Decision", "Moderator", "wait_notice"]

RECENT_VERDICTS = 8192  # cached verdicts per compiled rules at most (message texts are held no longer than that)
# What the cache holds for a text relayed unchanged: one shared object, so such an entry
# allocates nothing beyond its dict slot (the text is a str key, which the collector does not track).
_UNCHANGED = object()
_ALLOW, _HOLD, _END = Action.ALLOW, Action.HOLD, Action.END  # an enum's attribute costs three times a global
_HELD_USER = {
    "links": "Your message was not sent: links are not allowed here.",
    "invites": "Your message was not sent: Discord invites are not allowed here.",
}
_HELD_USER_DEFAULT = "Your message was not sent: it contains words this bridge does not relay."
_ENDED_USER = "Your message was not sent: it breaks this bridge's rules."
_HELD_STRANGER = "{who} sent a message that breaks this bridge's rules; it was not shown."
_ENDED_STRANGER = _HELD_STRANGER


class _Layer:
    """One layer's compiled rules and the verdicts given under them lately, by text, in two
    halves: the newer fills up, then replaces the older (so at most RECENT_VERDICTS are kept)."""

    __slots__ = ("rules", "recent", "older", "half")

    def __init__(self, rules: ContentRules) -> None:
        self.rules = rules
        self.recent: dict[str, object] = {}
        self.older: dict[str, object] = {}
        self.half = RECENT_VERDICTS // 2 - 1  # entries the newer half takes before a verdict that may add two


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """What the session does with one message: relay `text` (or not), tell someone, end the chat."""

    relay: bool
    text: str
    notice: str | None = None  # for the user of this session
    end: bool = False  # the session then ends the chat with Reason.POLICY, which says why
    verdict: Verdict | None = None

    def __init__(
        self, relay: bool, text: str, notice: str | None = None, end: bool = False, verdict: Verdict | None = None
    ) -> None:
        # The generated frozen __init__, by hand: one is made per checked message, and the slots'
        # descriptors cost half of object.__setattr__ per field.
        _SET_RELAY(self, relay)
        _SET_TEXT(self, text)
        _SET_NOTICE(self, notice)
        _SET_END(self, end)
        _SET_VERDICT(self, verdict)


_SET_RELAY, _SET_TEXT, _SET_NOTICE, _SET_END, _SET_VERDICT = (
    Decision.__dict__[name].__set__ for name in ("relay", "text", "notice", "end", "verdict")
)


class Moderator:
    """Owns the policy, the sanctions store and the start throttle; the session calls it.

    It never sees more than a user key (opaque, `PLATFORM:hash`) and the message text, and it
    keeps no text: the moderation log holds actions, keys and reasons only.
    """

    __slots__ = (
        "policy", "sanctions", "throttle", "images", "monotonic", "scope_of", "_recent", "_rules", "_unscoped",
        "_scopes", "_cooldown", "_last_room", "_last_text", "_last",
    )  # fmt: skip

    def __init__(
        self, policy: PolicySection, store: Store, *, clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.policy = policy
        self.sanctions = Sanctions.from_config(store, policy, clock=clock)
        self.throttle = StartThrottle.from_config(policy, clock=monotonic)
        # Pictures are counted per person like starts: a bounded number per window.
        self.images = StartThrottle(0.0, policy.max_images, policy.image_window, clock=monotonic)
        self.monotonic = monotonic
        # The moderation scope of a room (a Discord guild, a Matrix room); the router sets it
        # to ask the room's platform.
        self.scope_of: Callable[[Room], str | None] = _no_scope
        # Each compiled rules with the verdicts just given under them (by the rules' id): in the
        # hub each message is checked by its sender's session and again by the receiver's (about
        # 1,400 checks later under load), mostly under the same rules. Bounded per rules.
        self._recent: dict[int, _Layer] = {}
        # The same by (platform, configured scope or None), and the configured scopes: looked up
        # on every message, so kept out of the pydantic model (its attribute access is slow).
        self._rules: dict[tuple[str, str | None], _Layer] = {}
        self._unscoped: dict[str, _Layer] = {}  # the same by platform, while no scope has a layer
        self._scopes: frozenset[str] = frozenset(policy.scopes)
        self._cooldown = policy.first_message_cooldown
        # The refusal `relayed` just found: the session asks `from_user` / `from_stranger` about
        # the same room and text next, for the notice.
        self._last_room: Room | None = None
        self._last_text: str | None = None
        self._last: Verdict | None = None

    def set_policy(self, policy: PolicySection) -> None:
        """Put a rebuilt policy in force (a server's admins changed its layer): verdicts given under
        the old rules are forgotten, since a new rules object may reuse a freed one's id."""
        self.policy = policy
        self._recent.clear()
        self._rules.clear()
        self._unscoped.clear()
        self._scopes = frozenset(policy.scopes)
        self._cooldown = policy.first_message_cooldown
        self._last_room = self._last_text = self._last = None

    async def start_refusal(self, user: str | None, *, server: str | None = None, shared: bool = False) -> str | None:
        """The notice that refuses a start (banned, or starting too often), or None: the start is counted.

        `shared`: `user` stands for several people (Start.pairing tells them apart)."""
        if user is None:
            return None  # a room without a person key: per-room limits apply elsewhere
        ban = await self.sanctions.check(user, server=server)
        if ban is not None:
            return ban_notice(ban, self.sanctions.clock())
        wait = await self.throttle.check_shared(self.sanctions.store, user, shared=shared)
        return throttle_notice(wait) if wait > 0 else None

    async def image_refusal(self, user: str | None) -> str | None:
        """The notice that refuses a user's picture (too many in the window), or None: it is counted
        (with every instance sharing the store: a person's pictures on all of them count together)."""
        if user is None:
            return None  # a room without a person key: the per-chat picture rate applies
        try:
            wait = await self.images.check_shared(self.sanctions.store, user, limit="images")
        except StoreError:  # the shared count cannot be reached now: this instance's decides
            wait = self.images.check(user)
        return f"Your picture was not sent: too many pictures; try again in {format_duration(wait)}." if wait > 0 else None

    def first_message_wait(self, connected_at: float) -> float:
        """Seconds the user must still wait before a first message in a new chat (0: may send)."""
        cooldown = self._cooldown  # read on every message: kept out of the pydantic model
        if cooldown <= 0:
            return 0.0
        return max(0.0, connected_at + cooldown - self.monotonic())

    def compile(self, platforms: list[str]) -> None:
        """Compile each platform's rules now (at start-up), not at its first message: with long
        word lists that is milliseconds, which the first chat's first message would wait."""
        if not self._scopes:
            for platform in platforms:
                if platform not in self._unscoped:
                    self._unscoped[platform] = self._layer(platform, None)

    def _layer(self, platform: str, scope: str | None) -> _Layer:
        rules = self.policy.rules_for(platform, scope)
        layer = self._recent.get(id(rules))  # rules are compiled once and kept: their id is stable
        if layer is None:
            layer = self._recent[id(rules)] = _Layer(rules)
        return layer

    def _layer_for(self, room: Room) -> _Layer:
        if not self._scopes:  # the room's scope matters only when some scope has its own layer
            layer = self._unscoped.get(room.platform)
            if layer is None:
                layer = self._unscoped[room.platform] = self._layer(room.platform, None)
            return layer
        platform, scope = room.platform, self.scope_of(room)
        key = (platform, scope if scope is not None and f"{platform}:{scope}" in self._scopes else None)
        layer = self._rules.get(key)
        if layer is None:
            layer = self._rules[key] = self._layer(*key)
        return layer

    def relayed(self, room: Room, text: str) -> str | None:
        """What is relayed of `text` under the rules of `room`, as `from_user` / `from_stranger`
        would decide: `text` itself when it goes unchanged, the masked or defanged text, or None
        when it is not relayed (those two then give the notice and say whether the chat ends).
        Asked first on every message, so no Decision is made for one that is relayed: no rule
        can match it (found without folding it; most messages under the default rules), or the
        same text was just checked under the same rules (the other side's check of a relayed
        message), or the check finds it now. A refusal is remembered for the call that follows."""
        layer = None if self._scopes else self._unscoped.get(room.platform)  # _layer_for, inlined: every message
        if layer is None:
            layer = self._layer_for(room)
        rules = layer.rules
        if rules.only_invites and rules.clearly_allowed(text):
            return text
        recent = layer.recent
        found = recent.get(text) or layer.older.get(text)
        if found is None:  # _recall, inlined: every message the sender's session checks
            verdict = rules.changes(text)
            if verdict is None and len(recent) < layer.half:  # most messages
                recent[text] = _UNCHANGED
                return text
            found = _keep(layer, text, verdict)
        if found is _UNCHANGED:
            return text
        assert isinstance(found, Verdict)
        if found.action < _HOLD:
            return found.text
        self._last_room, self._last_text, self._last = room, text, found
        return None

    def clearly_allowed(self, room: Room, text: str) -> bool:
        """True when `text` is relayed unchanged under the rules of `room` naming no rule (as
        `from_user` / `from_stranger` would decide), by the same steps as `relayed`."""
        layer = self._layer_for(room)
        if layer.rules.only_invites and layer.rules.clearly_allowed(text):
            return True
        return (layer.recent.get(text) or _recall(layer, text)) is _UNCHANGED

    def _check(self, room: Room, text: str) -> Verdict:
        if text is self._last_text and room is self._last_room:  # the refusal `relayed` just found
            assert self._last is not None
            return self._last
        layer = self._layer_for(room)
        if layer.rules.only_invites and layer.rules.clearly_allowed(text):  # cheaper than the cache look-up, and keeps nothing
            return Verdict(_ALLOW, text)
        found = layer.recent.get(text) or _recall(layer, text)
        if found is _UNCHANGED:
            return Verdict(_ALLOW, text)
        assert isinstance(found, Verdict)
        return found

    def from_user(self, room: Room, text: str) -> Decision:
        """A user's message on its way to the stranger."""
        verdict = self._check(room, text)
        action = verdict.action
        if action == _END:
            return Decision(False, text, _ENDED_USER, True, verdict)
        if action == _HOLD:
            return Decision(False, text, _HELD_USER.get(verdict.rule or "", _HELD_USER_DEFAULT), False, verdict)
        return Decision(True, verdict.text, None, False, verdict)

    def from_stranger(self, room: Room, text: str, who: str | None = None) -> Decision:
        """A stranger's message on its way to the user of `room` (checked with that room's rules)."""
        verdict = self._check(room, text)
        action = verdict.action
        if action == _END:
            return Decision(False, text, _ENDED_STRANGER.format(who=who or "The stranger"), True, verdict)
        if action == _HOLD:
            return Decision(False, text, _HELD_STRANGER.format(who=who or "The stranger"), False, verdict)
        return Decision(True, verdict.text, None, False, verdict)

    async def report(self, reporter: str | None, reported: str | None, reason: str = "") -> ReportOutcome | None:
        """Record a report as input to strikes; None when the reporter has no key."""
        if reporter is None:
            return None
        return await self.sanctions.report(reporter, reported, reason)


def wait_notice(wait: float) -> str:
    """What a user who writes before the first-message cooldown has passed is told."""
    return f"Your message was not sent: wait {format_duration(wait)} before your first message in a new chat."


def _no_scope(room: Room) -> str | None:
    return None


def _recall(layer: _Layer, text: str) -> object:
    """The verdict on `text` (_UNCHANGED for "relayed as it is, no rule named") when it is not in
    the newer half of `layer`'s: from the older half, or found now and kept. Never None."""
    found = layer.older.get(text)
    return found if found is not None else _keep(layer, text, layer.rules.changes(text))


def _keep(layer: _Layer, text: str, verdict: Verdict | None) -> object:
    """`verdict` (of `layer.rules.changes(text)`) kept in `layer`, as `_recall` returns it."""
    recent = layer.recent
    if len(recent) >= layer.half:  # room for the two entries below
        # The newer half becomes the older: a verdict given just before is still found (the
        # receiver's check comes some hundreds of checks after the sender's).
        layer.older, recent = recent, {}
        layer.recent = recent
    if verdict is None:
        recent[text] = _UNCHANGED
        return _UNCHANGED
    if layer.rules.settled(text, verdict):  # relayed changed (its links defanged): no rule names what is relayed
        # What is relayed is checked again by the receiver, under the same rules when the rooms
        # share them: its verdict is known now (relayed as it is), a dict hit then.
        recent[verdict.text] = _UNCHANGED
    recent[text] = verdict
    return verdict
