"""Per-guild settings and content-policy layers set by server admins, one store key per guild."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bridge.abc import KeyValue
from bridge.policy.config import LayerConfig, ListConfig, PolicySection
from bridge.policy.moderator import Moderator
from bridge.policy.rules import LinkAction

__all__ = ["ACTIONS", "GuildPolicy", "GuildSettings", "Guilds", "MAX_WORDS", "MAX_WORD_LENGTH"]

log = logging.getLogger(__name__)

ACTIONS = ("hold", "mask", "end")
MAX_WORDS = 200  # words one guild may add to its lists
MAX_WORD_LENGTH = 100


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """How a guild's members meet strangers (/stranger-admin settings)."""

    only_guild: bool = False  # pair only with members of this guild
    platforms: tuple[str, ...] = ()  # pair only with users of these platforms; empty: any
    same_platform: bool = False  # refuse strangers from other platforms (web, Matrix, ...)
    min_account_age: float = 0.0  # seconds a Discord account must exist before /stranger start
    images: bool = False  # pictures both ways in this server's threads (only where the operator allows them)

    def accept(self, platform: str, guild: int) -> tuple[str, ...]:
        """The Start.accept that carries these settings for a member of `guild` on `platform`."""
        if self.only_guild:
            return (f"{platform}:{guild}",)
        if self.same_platform:
            return (platform,)
        return self.platforms

    def dump(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> GuildSettings:
        if not raw:
            return cls()
        data = json.loads(raw)
        data["platforms"] = tuple(data.get("platforms") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class GuildPolicy:
    """What a guild's admins changed on top of the operator's policy: link actions and added words."""

    links: LinkAction | None = None
    invites: LinkAction | None = None
    words: dict[str, tuple[str, ...]] = field(default_factory=dict)  # action -> words

    def empty(self) -> bool:
        return self.links is None and self.invites is None and not any(self.words.values())

    def count(self) -> int:
        return sum(len(w) for w in self.words.values())

    def action_of(self, word: str) -> str | None:
        return next((action for action, words in self.words.items() if word in words), None)

    def with_word(self, word: str, action: str) -> GuildPolicy:
        words = {a: tuple(w for w in ws if w != word) for a, ws in self.words.items()}
        words[action] = (*words.get(action, ()), word)
        return replace(self, words={a: ws for a, ws in words.items() if ws})

    def without_word(self, word: str) -> GuildPolicy:
        words = {a: tuple(w for w in ws if w != word) for a, ws in self.words.items()}
        return replace(self, words={a: ws for a, ws in words.items() if ws})

    def layer(self, below: LayerConfig | None) -> LayerConfig | None:
        """The scope layer: the operator's layer for this guild (if any) with these changes on top."""
        if self.empty():
            return below
        lists = dict(below.lists) if below is not None else {}
        for action, words in self.words.items():
            lists[f"guild-{action}"] = ListConfig(action=action, words=words)  # type: ignore[arg-type]
        return LayerConfig(
            links=self.links if self.links is not None else (below.links if below else None),
            invites=self.invites if self.invites is not None else (below.invites if below else None),
            lists=lists,
        )

    def dump(self) -> str | None:
        if self.empty():
            return None
        data = {"links": self.links and self.links.value, "invites": self.invites and self.invites.value,
                "words": {a: list(w) for a, w in self.words.items()}}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> GuildPolicy:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(
            links=LinkAction(data["links"]) if data.get("links") else None,
            invites=LinkAction(data["invites"]) if data.get("invites") else None,
            words={a: tuple(w) for a, w in (data.get("words") or {}).items() if a in ACTIONS and w},
        )


class Guilds:
    """Settings and policy layers of each guild, under their own keys ("guild:ID:settings",
    "guild:ID:policy", "guild:ID:stats") of the platform's state. Every change is one atomic
    `update` of its key (compare-and-set, retried), so two instances (shards) changing one guild at
    once never lose each other's change; a lock per guild keeps this process's own changes from
    retrying against each other. Settings are read from the store at every use, so several
    instances sharing a store agree; a policy layer takes effect in this process at once."""

    def __init__(self, platform: str, state: KeyValue) -> None:
        self.platform = platform
        self.state = state
        self._locks: dict[int, asyncio.Lock] = {}
        self._operator: dict[str, LayerConfig | None] = {}  # scope key -> the operator's own layer

    def locked(self, guild: int) -> asyncio.Lock:
        """The lock of one guild's keys (one per guild the bot is in: bounded by Discord)."""
        return self._locks.setdefault(guild, asyncio.Lock())

    async def settings(self, guild: int) -> GuildSettings:
        return GuildSettings.load(await self.state.get(f"guild:{guild}:settings"))

    async def save_settings(self, guild: int, settings: GuildSettings) -> None:
        await self.state.set(f"guild:{guild}:settings", None if settings == GuildSettings() else settings.dump())

    async def change_settings(self, guild: int, changes: dict[str, Any]) -> GuildSettings:
        """Apply `changes` (fields of GuildSettings) to the stored settings atomically; the result."""

        def change(raw: str | None) -> tuple[str | None, GuildSettings]:
            updated = replace(GuildSettings.load(raw), **changes)
            return (None if updated == GuildSettings() else updated.dump()), updated

        async with self.locked(guild):
            return await self.state.update(f"guild:{guild}:settings", change)

    async def count(self, guild: int | None, what: str) -> None:
        """Add one to a counter of the guild's stats ("sessions", "reports", "bans")."""
        if guild is None:
            return

        def change(raw: str | None) -> tuple[str | None, None]:
            counts = json.loads(raw) if raw else {}
            counts[what] = counts.get(what, 0) + 1
            return json.dumps(counts, separators=(",", ":")), None

        async with self.locked(guild):
            await self.state.update(f"guild:{guild}:stats", change)

    async def counts(self, guild: int) -> dict[str, int]:
        raw = await self.state.get(f"guild:{guild}:stats")
        return json.loads(raw) if raw else {}

    async def policy(self, guild: int) -> GuildPolicy:
        return GuildPolicy.load(await self.state.get(f"guild:{guild}:policy"))

    async def change_policy(self, moderator: Moderator, guild: int, edit: Callable[[GuildPolicy], GuildPolicy | str]) -> GuildPolicy | str:
        """Change the guild's stored layer atomically with `edit` (the layer now -> the new one, or a
        refusal to answer, which changes nothing), then apply it to the moderator. A combination
        the policy refuses raises ValueError and nothing is stored."""

        def change(raw: str | None) -> tuple[str | None, GuildPolicy | str]:
            edited = edit(GuildPolicy.load(raw))
            if isinstance(edited, str):
                return raw, edited
            self.section(moderator, {guild: edited})  # validated before it is stored
            return edited.dump(), edited

        async with self.locked(guild):
            result = await self.state.update(f"guild:{guild}:policy", change)
            if isinstance(result, GuildPolicy):
                self.apply(moderator, {guild: result})
        return result

    async def load_policies(self, moderator: Moderator, guilds: list[int]) -> None:
        """At start-up: put every guild's stored layer into the moderator's policy, in one rebuild."""
        found: dict[int, GuildPolicy] = {}
        for guild in guilds:
            policy = await self.policy(guild)
            if not policy.empty():
                found[guild] = policy
        if found:
            try:
                self.apply(moderator, found)
            except ValueError as exc:
                log.error("stored server policy layers could not be applied: %s", exc)
            else:
                log.info("server policy layers applied for %d guilds", len(found))

    def scope_key(self, guild: int) -> str:
        return f"{self.platform}:{guild}"

    def apply(self, moderator: Moderator, policies: dict[int, GuildPolicy]) -> None:
        """Rebuild the moderator's PolicySection with these guilds' layers (validated like the config)."""
        moderator.set_policy(self.section(moderator, policies))

    def section(self, moderator: Moderator, policies: dict[int, GuildPolicy]) -> PolicySection:
        """The moderator's PolicySection with these guilds' layers; ValueError when it is refused."""
        current = moderator.policy
        scopes = dict(current.scopes)
        for guild, policy in policies.items():
            key = self.scope_key(guild)
            if key not in self._operator:  # the layer the operator wrote for this guild, before any change
                self._operator[key] = current.scopes.get(key)
            layer = policy.layer(self._operator[key])
            if layer is None:
                scopes.pop(key, None)
            else:
                scopes[key] = layer
        data = current.model_dump()
        data["scopes"] = {k: v.model_dump() for k, v in scopes.items()}
        return PolicySection.model_validate(data)

    def operator_layer(self, moderator: Moderator, guild: int) -> LayerConfig | None:
        """The operator's own layer for this guild (from the config), whatever admins changed."""
        key = self.scope_key(guild)
        return self._operator[key] if key in self._operator else moderator.policy.scopes.get(key)
