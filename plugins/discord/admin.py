"""/stranger-admin: bans, strikes, the server's content policy, pairing settings and stats, for Manage Server only."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bridge.identity import user_key
from bridge.policy.config import LayerConfig
from bridge.policy.moderator import Moderator
from bridge.policy.rules import LinkAction
from bridge.policy.timespan import format_duration, parse_duration

from .guilds import ACTIONS, MAX_WORD_LENGTH, MAX_WORDS, GuildPolicy, GuildSettings
from .modlog import ADMIN

if TYPE_CHECKING:
    from .platform import DiscordPlatform

__all__ = ["Admin", "admin_group"]

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
REFUSED = "This command is for server admins: it needs the Manage Server permission."
_PLATFORM = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_PLATFORMS = 8
SHOW_LIMIT = 1900  # characters of an answer (Discord's limit is 2,000)

ActionChoice = Literal["hold", "mask", "end"]
LinkChoice = Literal["allow", "defang", "block"]


def admin_group(admin: Admin) -> app_commands.Group:
    """/stranger-admin and its subcommands. Discord shows it only to members with Manage Server
    (`default_member_permissions`); a server can change that, so every handler checks again."""
    group = app_commands.Group(
        name="stranger-admin", description="Moderate stranger chats on this server",
        default_permissions=discord.Permissions(manage_guild=True),
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False),
    )  # fmt: skip

    @group.command(name="ban", description="Ban a Discord user from starting stranger chats")
    @app_commands.describe(user="Who", duration="How long, e.g. 30m, 1d, 7d (empty: until unbanned)", reason="Why (the user is told)")
    async def ban(interaction: discord.Interaction, user: discord.User, duration: str | None = None,
                  reason: str | None = None) -> None:  # fmt: skip
        await admin.run(interaction, admin.cmd_ban(interaction, user, duration, reason))

    @group.command(name="unban", description="Lift a Discord user's ban")
    async def unban(interaction: discord.Interaction, user: discord.User) -> None:
        await admin.run(interaction, admin.cmd_unban(interaction, user))

    @group.command(name="strikes", description="A Discord user's strikes and ban")
    async def strikes(interaction: discord.Interaction, user: discord.User) -> None:
        await admin.run(interaction, admin.cmd_strikes(interaction, user))

    @group.command(name="stats", description="Stranger chats, reports and bans of this server")
    async def stats(interaction: discord.Interaction) -> None:
        await admin.run(interaction, admin.cmd_stats(interaction))

    @group.command(name="settings", description="Who this server's members may meet (no options: show)")
    @app_commands.describe(
        only_guild="Pair only members of this server with each other",
        platforms="Pair only with users of these platforms, comma-separated (\"any\": no limit)",
        same_platform="Refuse strangers from other platforms (web, Matrix, ...)",
        min_account_age="Least age of a Discord account to start, e.g. 7d (0: none)",
        images="Relay pictures both ways (re-encoded, no metadata), where the bridge allows them",
    )
    async def settings(interaction: discord.Interaction, only_guild: bool | None = None, platforms: str | None = None,
                       same_platform: bool | None = None, min_account_age: str | None = None,
                       images: bool | None = None) -> None:  # fmt: skip
        await admin.run(interaction, admin.cmd_settings(interaction, only_guild, platforms, same_platform, min_account_age,
                                                        images))

    policy = app_commands.Group(name="policy", description="This server's content policy", parent=group)

    @policy.command(name="show", description="The content policy in force on this server")
    async def show(interaction: discord.Interaction) -> None:
        await admin.run(interaction, admin.cmd_policy_show(interaction))

    @policy.command(name="add-word", description="Add a word or phrase to this server's lists")
    @app_commands.describe(word="Word or phrase", action="hold (not sent, sender told), mask (asterisks) or end the chat")
    async def add_word(interaction: discord.Interaction, word: str, action: ActionChoice = "hold") -> None:
        await admin.run(interaction, admin.cmd_add_word(interaction, word, action))

    @policy.command(name="remove-word", description="Remove a word this server added")
    async def remove_word(interaction: discord.Interaction, word: str) -> None:
        await admin.run(interaction, admin.cmd_remove_word(interaction, word))

    @policy.command(name="links", description="What happens to links (\"inherit\": the bridge's setting)")
    async def links(interaction: discord.Interaction, action: Literal["allow", "defang", "block", "inherit"]) -> None:
        await admin.run(interaction, admin.cmd_link_action(interaction, "links", action))

    @policy.command(name="invites", description="What happens to Discord invites (\"inherit\": the bridge's setting)")
    async def invites(interaction: discord.Interaction, action: Literal["allow", "defang", "block", "inherit"]) -> None:
        await admin.run(interaction, admin.cmd_link_action(interaction, "invites", action))

    return group


class Admin:
    """The handlers of /stranger-admin. Each answer is ephemeral and pings nobody; each action is
    posted to the moderation log. Bans act on the Discord user keys the core uses."""

    def __init__(self, host: DiscordPlatform) -> None:
        self.host = host

    async def run(self, interaction: discord.Interaction, action) -> None:
        """Check the caller, then run `action` (a coroutine of a cmd_* handler) and answer with its text."""
        if not self.host.commands.first_time(interaction):
            action.close()
            return
        problem = self._refusal(interaction)
        if problem is not None:
            action.close()
            log.info("/stranger-admin refused: the member lacks Manage Server")
            await self.host.commands.reply(interaction, problem)
            return
        try:
            text = await action
        except Exception:
            log.exception("/stranger-admin failed")
            text = "That did not work: the bridge hit an error (it is in the bridge's log). Try again later."
        await self.host.commands.reply(interaction, text)

    def _refusal(self, interaction: discord.Interaction) -> str | None:
        if interaction.guild_id is None:
            return "This command works only in a server."
        if self.host.config.guilds and interaction.guild_id not in self.host.config.guilds:
            return "Stranger chats are not enabled on this server."
        perms = interaction.permissions  # the member's, from this interaction: never a cached role
        if not (perms.manage_guild or perms.administrator):
            return REFUSED
        if self.host.moderator is None:
            return "Moderation is not available on this bridge."
        return None

    @property
    def moderator(self) -> Moderator:
        assert self.host.moderator is not None
        return self.host.moderator

    def _logged(self, interaction: discord.Interaction, what: str) -> None:
        guild = interaction.guild.name if interaction.guild is not None else str(interaction.guild_id)
        self.host.modlog.post(f"**Admin** {interaction.user.mention} on “{discord.utils.escape_markdown(guild)}”: {what}")

    # ---- bans and strikes --------------------------------------------------------------------

    async def cmd_ban(self, interaction: discord.Interaction, user: discord.User, duration: str | None,
                      reason: str | None) -> str:  # fmt: skip
        seconds: float | None = None
        if duration and duration.strip():
            try:
                seconds = parse_duration(duration)
            except ValueError:
                return "That duration is not one I understand: write e.g. 30m, 12h, 7d. Nobody was banned."
            if seconds <= 0:
                return "A ban needs a duration above zero (or none: until unbanned). Nobody was banned."
        ban = await self.moderator.sanctions.ban(user_key("discord", user.id), seconds, reason or "", by=ADMIN)
        await self.host.guilds.count(interaction.guild_id, "bans")
        span = "until unbanned" if ban.until is None else f"for {format_duration(ban.until - ban.since)}"
        because = f" Reason: {ban.reason}" if ban.reason else ""
        self._logged(interaction, f"banned {user.mention} {span}.{because}")
        return f"{user.mention} is banned from stranger chats on this bridge {span}.{because}"

    async def cmd_unban(self, interaction: discord.Interaction, user: discord.User) -> str:
        if not await self.moderator.sanctions.unban(user_key("discord", user.id), by=ADMIN):
            return f"{user.mention} is not banned."
        self._logged(interaction, f"unbanned {user.mention}.")
        return f"{user.mention} may start stranger chats again."

    async def cmd_strikes(self, interaction: discord.Interaction, user: discord.User) -> str:
        sanctions = self.moderator.sanctions
        key = user_key("discord", user.id)
        found = next(((b, n) for k, b, n in await sanctions.listing() if k == key), (None, 0))
        ban, strikes = found
        ban = ban or await sanctions.check(key)
        parts = [f"{user.mention}: {strikes} strike{'s' if strikes != 1 else ''}"]
        if ban is not None:
            left = "until unbanned" if ban.until is None else f"for {format_duration(ban.until - sanctions.clock())} more"
            parts.append(f"banned {left}" + (f" ({ban.reason})" if ban.reason else ""))
        else:
            parts.append("not banned")
        return "; ".join(parts) + "."

    async def cmd_stats(self, interaction: discord.Interaction) -> str:
        gid = interaction.guild_id
        assert gid is not None
        counts = await self.host.guilds.counts(gid)
        live = self.host.threads.in_guild(gid)
        return (f"Stranger chats on this server: {live} running now; since counting began, {counts.get('sessions', 0)} "
                f"started, {counts.get('reports', 0)} reports, {counts.get('bans', 0)} bans by admins here.")

    # ---- pairing settings --------------------------------------------------------------------

    async def cmd_settings(self, interaction: discord.Interaction, only_guild: bool | None, platforms: str | None,
                           same_platform: bool | None, min_account_age: str | None,
                           images: bool | None = None) -> str:  # fmt: skip
        gid = interaction.guild_id
        assert gid is not None
        guilds = self.host.guilds
        changes: dict = {}
        if only_guild is not None:
            changes["only_guild"] = only_guild
        if same_platform is not None:
            changes["same_platform"] = same_platform
        if images is not None:
            changes["images"] = images
        if platforms is not None:
            names = tuple(dict.fromkeys(p.strip().lower() for p in platforms.split(",") if p.strip()))
            if names in ((), ("any",)):
                names = ()
            elif len(names) > MAX_PLATFORMS or not all(_PLATFORM.fullmatch(n) for n in names):
                return f"Platforms are written as names, comma-separated (at most {MAX_PLATFORMS}), or “any”. Nothing changed."
            changes["platforms"] = names
        if min_account_age is not None:
            try:
                changes["min_account_age"] = parse_duration(min_account_age)
            except ValueError:
                return "That account age is not one I understand: write e.g. 7d, 12h, or 0. Nothing changed."
        if not changes:
            return "Settings of this server:\n" + _describe(await guilds.settings(gid), self.host.config.images)
        updated = await guilds.change_settings(gid, changes)
        self._logged(interaction, "changed the server's stranger settings: " + _describe(updated, self.host.config.images).replace("\n", "; "))
        return "Saved. Settings of this server (pairing applies to chats started from now on, pictures at once):\n" + _describe(updated, self.host.config.images)

    # ---- content policy ----------------------------------------------------------------------

    async def cmd_policy_show(self, interaction: discord.Interaction) -> str:
        gid = interaction.guild_id
        assert gid is not None
        policy = self.moderator.policy
        name = self.host.name
        layers: list[LayerConfig] = [policy]
        if name in policy.platforms:
            layers.append(policy.platforms[name])
        scope = policy.scopes.get(f"{name}:{gid}")
        if scope is not None:
            layers.append(scope)
        links, invites, lists = LinkAction.ALLOW, LinkAction.BLOCK, {}
        for layer in layers:  # the same order the core merges them in: base, platform, this server
            links = layer.links or links
            invites = layer.invites or invites
            lists.update(layer.lists)
        mine = await self.host.guilds.policy(gid)
        out = [f"Links: {links.value}. Discord invites: {invites.value}."]
        for list_name, cfg in lists.items():
            if not cfg.enabled or cfg.action is None:
                continue
            ours = list_name.startswith("guild-") and list_name.removeprefix("guild-") in mine.words
            source = "this server" if ours else "the bridge"
            words = ", ".join(f"“{w}”" for w in cfg.words) if source == "this server" else f"{len(cfg.words)} words"
            pats = f", {len(cfg.patterns)} patterns" if cfg.patterns else ""
            out.append(f"List “{list_name}” ({source}): {cfg.action}: {words}{pats}")
        if len(out) == 1:
            out.append("No word lists.")
        text = "\n".join(out)
        return text if len(text) <= SHOW_LIMIT else text[: SHOW_LIMIT - 1] + "…"

    async def cmd_add_word(self, interaction: discord.Interaction, word: str, action: str) -> str:
        gid = interaction.guild_id
        assert gid is not None
        word = " ".join(word.split())
        if not word or len(word) > MAX_WORD_LENGTH:
            return f"A word or phrase has 1 to {MAX_WORD_LENGTH} characters. Nothing changed."
        if action not in ACTIONS:
            return "The action is hold, mask or end. Nothing changed."
        def add(mine: GuildPolicy) -> GuildPolicy | str:
            if mine.action_of(word) is None and mine.count() >= MAX_WORDS:
                return f"This server has {MAX_WORDS} words already; remove one first. Nothing changed."
            return mine.with_word(word, action)

        try:
            refused = await self.host.guilds.change_policy(self.moderator, gid, add)
        except ValueError as exc:
            log.info("a server policy change was refused: %s", exc)
            return "That word cannot be used in a list. Nothing changed."
        if isinstance(refused, str):
            return refused
        self._logged(interaction, f"added a word to the server's “{action}” list.")
        return f"Added “{word}” ({action}): it applies to this server's chats at once, both ways."

    async def cmd_remove_word(self, interaction: discord.Interaction, word: str) -> str:
        gid = interaction.guild_id
        assert gid is not None
        word = " ".join(word.split())
        def remove(mine: GuildPolicy) -> GuildPolicy | str:
            if mine.action_of(word) is None:
                return (f"“{word}” is not on this server's own lists (words of the bridge's operator cannot be "
                        "removed here). Nothing changed.")
            return mine.without_word(word)

        refused = await self.host.guilds.change_policy(self.moderator, gid, remove)
        if isinstance(refused, str):
            return refused
        self._logged(interaction, "removed a word from the server's lists.")
        return f"Removed “{word}” from this server's lists."

    async def cmd_link_action(self, interaction: discord.Interaction, which: str, action: str) -> str:
        gid = interaction.guild_id
        assert gid is not None
        value = None if action == "inherit" else LinkAction(action)
        await self.host.guilds.change_policy(self.moderator, gid, lambda mine: replace(mine, **{which: value}))
        what = "links" if which == "links" else "Discord invites"
        self._logged(interaction, f"set {what} to {action}.")
        return f"On this server {what} now: {action} (applies at once, both ways)."


def _describe(s: GuildSettings, bridge_images: bool) -> str:
    age = format_duration(s.min_account_age) if s.min_account_age > 0 else "none"
    if not s.images:
        pictures = "no"
    else:
        pictures = "yes" if bridge_images else "yes, but the bridge has pictures off, so none are relayed"
    return "\n".join([
        f"Pair only inside this server: {'yes' if s.only_guild else 'no'}",
        f"Only these platforms: {', '.join(s.platforms) if s.platforms else 'any'}",
        f"Refuse strangers from other platforms: {'yes' if s.same_platform else 'no'}",
        f"Minimum Discord account age: {age}",
        f"Relay pictures: {pictures}",
    ])
