"""The [policy] table: content rules per platform and per Discord guild or Matrix room, sanctions, throttles."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from ..abc import StrictModel
from .patterns import UnsafePattern, check_pattern
from .rules import Action, ContentRules, LinkAction, WordList
from .timespan import parse_duration

__all__ = ["Duration", "LayerConfig", "ListConfig", "PolicySection"]

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
_ACTIONS = {"mask": Action.MASK, "hold": Action.HOLD, "end": Action.END}


class ListConfig(StrictModel):
    """[policy.lists.NAME]: words and patterns that share one action."""

    action: Literal["hold", "mask", "end"] | None = None  # required unless the list is switched off
    words: tuple[str, ...] = ()  # whole words or phrases, matched after folding
    patterns: tuple[str, ...] = ()  # regexes over the folded text (lower case, single spaces)
    enabled: bool = True  # false in a platform or scope layer switches an inherited list off

    @model_validator(mode="after")
    def _action(self) -> ListConfig:
        if self.enabled and self.action is None:
            raise ValueError("action is required (hold, mask or end) unless enabled = false")
        return self

    @field_validator("words")
    @classmethod
    def _words(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        for word in words:
            if not word.strip():
                raise ValueError("an empty word matches nothing; remove it")
        return words

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                check_pattern(pattern)
            except UnsafePattern as exc:
                raise ValueError(str(exc)) from None
        return patterns


class LayerConfig(StrictModel):
    """One layer of content rules: a value left out is inherited from the layer below."""

    links: LinkAction | None = None
    invites: LinkAction | None = None
    lists: dict[str, ListConfig] = {}  # a list named like an inherited one replaces it


class PolicySection(LayerConfig):
    """The [policy] table. Content rules are layered base → [policy.platforms.NAME] →
    [policy.scopes."PLATFORM:ID"] (a Discord guild id or a Matrix room id)."""

    links: LinkAction | None = LinkAction.ALLOW
    invites: LinkAction | None = LinkAction.BLOCK
    platforms: dict[str, LayerConfig] = {}
    scopes: dict[str, LayerConfig] = {}

    # Reports, strikes and bans
    report_threshold: float = Field(3.0, ge=2.0)  # weighted distinct reporters that make a strike
    report_window: Duration = 86400.0  # reports and reporter weights count this long
    strike_ttl: Duration = 30 * 86400.0  # strikes are forgotten this long after the last one
    ban_steps: tuple[Duration, ...] = (3600.0, 86400.0, 7 * 86400.0)  # ban per strike; the last repeats
    log_size: int = Field(1000, ge=10, le=100_000)  # moderation log records kept (a ring)
    log_retention: Duration = 30 * 86400.0  # and for at most this long

    # Start throttling, per user key, on every platform
    start_cooldown: Duration = 0.0  # seconds between two starts ("next" included)
    max_starts: int = Field(60, ge=1)  # starts per start_window
    # starts per start_window for a key several people share: the hashed address network of
    # cookie-less web clients (users of a federated bridge, one NAT), who all count as one to bans
    max_shared_starts: int = Field(600, ge=1)
    start_window: Duration = 600.0
    first_message_cooldown: Duration = 0.0  # seconds after a chat begins before the user may write

    # Pictures (where a platform lets them through), per user key over all their chats
    max_images: int = Field(30, ge=1)  # pictures per image_window
    image_window: Duration = 600.0

    _compiled: dict[tuple[str, str | None], ContentRules] = PrivateAttr(default_factory=dict)
    # The same by the chain of layers merged: platforms without a layer of their own share the
    # base's rules (compiled once, kept once, and a message relayed between two of them is
    # checked by the receiver against the verdicts the sender's check left).
    _chains: dict[tuple[int, ...], ContentRules] = PrivateAttr(default_factory=dict)

    @field_validator("ban_steps")
    @classmethod
    def _steps(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("at least one ban duration is needed")
        if list(steps) != sorted(steps):
            raise ValueError("ban durations must grow (for example [\"1h\", \"24h\", \"7d\"])")
        return steps

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, scopes: dict[str, LayerConfig]) -> dict[str, LayerConfig]:
        for key in scopes:
            platform, sep, scope = key.partition(":")
            if not sep or not platform or not scope:
                raise ValueError(f"{key!r}: a scope is written \"PLATFORM:ID\" (\"discord:GUILD_ID\", \"matrix:!room:server\")")
        return scopes

    @model_validator(mode="after")
    def _compile(self) -> PolicySection:
        # Every layer chain is compiled once here, so a bad combination fails at config time.
        self.rules_for("")
        for name in self.platforms:
            self.rules_for(name)
        for key in self.scopes:
            platform, _, scope = key.partition(":")
            self.rules_for(platform, scope)
        return self

    def rules_for(self, platform: str, scope: str | None = None) -> ContentRules:
        """The compiled rules for a room of `platform` inside `scope` (guild or room id), if any."""
        compiled = self._compiled
        key = (platform, scope if scope is not None and f"{platform}:{scope}" in self.scopes else None)
        rules = compiled.get(key)
        if rules is None:
            layers: list[LayerConfig] = [self]
            if platform in self.platforms:
                layers.append(self.platforms[platform])
            if key[1] is not None:
                layers.append(self.scopes[f"{platform}:{key[1]}"])
            chain = tuple(map(id, layers))  # the layers belong to this section: their ids are stable
            rules = self._chains.get(chain)
            if rules is None:
                rules = self._chains[chain] = _merge(layers)
            compiled[key] = rules
        return rules


def _merge(layers: list[LayerConfig]) -> ContentRules:
    links, invites = LinkAction.ALLOW, LinkAction.BLOCK
    lists: dict[str, ListConfig] = {}
    for layer in layers:
        links = layer.links if layer.links is not None else links
        invites = layer.invites if layer.invites is not None else invites
        lists.update(layer.lists)
    return ContentRules(
        [
            WordList(name, _ACTIONS[cfg.action], cfg.words, cfg.patterns)
            for name, cfg in lists.items()
            if cfg.enabled and cfg.action is not None
        ],
        links,
        invites,
    )
