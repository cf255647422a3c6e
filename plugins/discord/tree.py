"""The /stranger command tree as Discord registers it, and its help text; each command goes to `Commands`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

if TYPE_CHECKING:
    from .commands import Commands

__all__ = ["HELP", "LINES_SHARED", "command_group", "help_text"]

HELP = (
    "**/stranger start** — meet a random stranger in a private thread (options: interests, language, mode)\n"
    "**/stranger next** — leave this stranger and meet another\n"
    "**/stranger stop** — end the chat\n"
    "**/stranger ask** — ask a question and watch two strangers discuss it\n"
    "**/stranger answer** — discuss someone's question with another stranger\n"
    "**/stranger report** — end the chat and report the stranger to this bridge\n"
    "Strangers never see your name, your server or your channel."
)
LINES_SHARED = ("A report shares the last {n} lines of the chat (yours and the stranger's) with this "
                "bridge's moderators.")


def help_text(lines: int) -> str:
    """/stranger help: says that a report shares chat lines exactly when the moderation log gets them."""
    return HELP + ("\n" + LINES_SHARED.format(n=lines) if lines > 0 else "")


ModeChoice = Literal["random", "ask", "answer", "group"]


def command_group(commands: Commands, dm: bool) -> app_commands.Group:
    """/stranger and its subcommands, each handed to `commands`."""
    # Offered in DMs with the bot only when dm = true (the DM refusal stays for stale registrations).
    contexts = app_commands.AppCommandContext(guild=True, dm_channel=dm, private_channel=False)
    group = app_commands.Group(name="stranger", description="Chat with a random stranger", allowed_contexts=contexts)

    @group.command(name="start", description="Meet a random stranger (in a session thread: the next one)")
    @app_commands.describe(
        interests="Comma-separated interests to match on",
        language="Two-letter language code, e.g. en",
        mode="random, ask (watch two strangers), answer (discuss a question) or group (three people)",
    )
    async def start(
        interaction: discord.Interaction,
        interests: str | None = None,
        language: str | None = None,
        mode: ModeChoice = "random",
    ) -> None:
        await commands.cmd_start(interaction, interests=interests, language=language, mode=mode)

    @group.command(name="next", description="Leave this stranger and meet another")
    async def next_(interaction: discord.Interaction) -> None:
        await commands.cmd_next(interaction)

    @group.command(name="stop", description="End the chat")
    async def stop(interaction: discord.Interaction) -> None:
        await commands.cmd_stop(interaction)

    @group.command(name="ask", description="Ask a question and watch two strangers discuss it")
    @app_commands.describe(question="The question the strangers will discuss")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await commands.cmd_start(interaction, mode="ask", question=question)

    @group.command(name="answer", description="Discuss someone's question with another stranger")
    async def answer(interaction: discord.Interaction) -> None:
        await commands.cmd_start(interaction, mode="answer")

    @group.command(name="report", description="End the chat and report the stranger")
    @app_commands.describe(reason="What happened (seen by this bridge's moderators, never by the stranger)")
    async def report(interaction: discord.Interaction, reason: app_commands.Range[str, 1, 200] | None = None) -> None:
        await commands.cmd_report(interaction, reason)

    @group.command(name="help", description="What /stranger does")
    async def help_(interaction: discord.Interaction) -> None:
        if commands.first_time(interaction):
            modlog = commands.host.modlog
            await commands.reply(interaction, help_text(modlog.keep if modlog.usable else 0))

    return group
