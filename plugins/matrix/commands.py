"""Bot commands: `!stranger start [interests…]`, next, stop, ask, answer, report, help (pure parsing)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.events import Disconnected, Event, Mode, Report, Start

__all__ = ["Command", "help_text", "parse", "to_event"]

NAMES = ("start", "next", "stop", "ask", "answer", "report", "images", "help")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command; `name` is "unknown" for anything not understood, `rest` the raw argument text."""

    name: str
    args: tuple[str, ...] = ()
    rest: str = ""


def parse(body: str, prefix: str) -> Command | None:
    """The command in a message body, or None when the body is not addressed to the bot."""
    if prefix[:1] in _PUNCTUATION and prefix[0] not in body:
        # Most messages: the prefix starts with an ASCII mark that no other character lowercases
        # to, and the body does not hold it (tests/matrix/test_fastpaths checks every code point).
        return None
    return _parse(body, prefix)


def _parse(body: str, prefix: str) -> Command | None:
    """parse, without its quick refusal."""
    text = body.strip()
    head, _, rest = text.partition(" ")
    if head.lower() != prefix.lower():
        # Also accept a newline right after the prefix.
        head, _, rest = text.partition("\n")
        if head.strip().lower() != prefix.lower():
            return None
    rest = rest.strip()
    if not rest:
        return Command("help")
    word, _, arg = rest.partition(" ")
    if "\n" in word:
        word, _, more = word.partition("\n")
        arg = more + " " + arg
    word = word.lower()
    arg = arg.strip()
    if word not in NAMES:
        return Command("unknown", rest=rest)
    return Command(word, tuple(arg.split()) if arg else (), arg)


def help_text(prefix: str, report_lines: int | None = None, *, images: bool = False) -> str:
    """The help notice, with the configured prefix; `report_lines`: None without a moderation log,
    else how many lines of the chat a report shares with the moderators (0: none); `images`: the
    bridge relays images where a room's moderators turn them on."""
    p = prefix
    if report_lines is None:
        shared = ""
    elif report_lines:
        shared = f" A report goes to the moderators with the last {report_lines} lines of the chat at most."
    else:
        shared = " A report goes to the moderators without any lines of the chat."
    return (
        "I connect this room with a random stranger. Commands:\n"
        f"{p} start [interests…] — find a stranger (with shared interests if given)\n"
        f"{p} next — leave this stranger and find another\n"
        f"{p} stop — end the chat\n"
        f"{p} ask <question> — spy mode: watch two strangers discuss your question\n"
        f"{p} answer — discuss a spy's question with another stranger\n"
        f"{p} report — end the chat and report the stranger\n"
        + (f"{p} images on|off — moderators: send images both ways in this room (metadata removed)\n" if images else "")
        + f"{p} help — this text\n"
        "While chatting, everything else you write goes to the stranger. "
        + ("Files, videos, audio, mentions and links to Matrix are never sent; images only where turned on."
           if images else "Media, mentions and links to Matrix are never sent.") + shared
    )



def to_event(command: Command, *, user: str | None, last: Start | None) -> Event | None:
    """The user-side event a command means; None for help/unknown (answered locally)."""
    match command.name:
        case "start":
            return Start(interests=command.args, user=user)
        case "next":
            if last is not None:
                return Start(
                    interests=last.interests, mode=last.mode, question=last.question, user=user
                )
            return Start(user=user)
        case "stop":
            return Disconnected()
        case "ask":
            return Start(mode=Mode.ASK, question=command.rest or None, user=user)
        case "answer":
            return Start(mode=Mode.ANSWER, answer_questions=True, user=user)
        case "report":
            return Report()
        case _:
            return None
