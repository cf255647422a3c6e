"""Pure Discord rendering: events → JSON payloads, stranger text neutralised, user text anonymised."""

from __future__ import annotations

import re
import unicodedata

from bridge.events import Connected, Disconnected, Event, Question, ServerNotice, Waiting
from bridge.hygiene import cut, split
from bridge.wording import describe

__all__ = [
    "ALLOWED_MENTIONS",
    "BUTTONS",
    "EPHEMERAL",
    "LIMIT",
    "MAX_PARTS",
    "MERGE_LIMIT",
    "MOD_LOG_LINE",
    "QUOTE_LIMIT",
    "SUPPRESS_EMBEDS",
    "anonymise",
    "edit_payloads",
    "merge_note",
    "mod_entry_text",
    "mod_log_payloads",
    "neutralise",
    "notice_payload",
    "quote_line",
    "reaction_emoji",
    "stranger_payloads",
    "text_notice",
    "thread_name",
    "undelivered_notice",
]

LIMIT = 2000  # Discord's message content limit
MAX_PARTS = 3  # a longer stranger message is split into at most this many messages, then cut
MOD_LOG_LINE = 200  # characters of one chat line kept for the moderation log
SUPPRESS_EMBEDS = 1 << 2  # message flag: no link previews (stranger links never unfurl)
EPHEMERAL = 1 << 6
ALLOWED_MENTIONS: dict = {"parse": [], "users": [], "roles": [], "replied_user": False}
NOTICE_COLOUR = 0x5865F2
ENDED_COLOUR = 0x80848E
MERGE_LIMIT = LIMIT - 200  # characters of stranger text merged into one message (room for escapes)
QUOTE_LIMIT = 100  # characters of the quoted message a reply shows
EMOJI_LIMIT = 16  # code points of one reaction emoji (the longest ZWJ sequences and tag flags fit)

# Custom ids of the session buttons; the platform maps them back to user events.
BUTTONS: dict[str, str] = {"stranger:next": "Next", "stranger:stop": "Stop", "stranger:report": "Report"}
_BUTTON_STYLE = {"stranger:next": 1, "stranger:stop": 2, "stranger:report": 4}

ZWSP = "\u200b"
# Characters that can hide inside a mention to dodge a filter; removed before we add our own breaks.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\u180e\ufeff\u00ad\u034f\u115f\u1160\u3164\uffa0]")
_AT_LOOKALIKES = re.compile("[@\uff20\ufe6b]")  # @, fullwidth ＠, small ﹫
_ANGLE = re.compile(r"[<\uff1c\ufe64](?=\S)")  # "<" (and look-alikes) opening any <…> syntax
_MASKED_LINK = re.compile(r"\]\s*\(")  # [text](url): a hidden link target
_INVITE = re.compile(r"(discord(?:app)?)\.((?:gg|com|io|me|li)\b)", re.IGNORECASE)
_LINE_MARKUP = re.compile(r"(?m)^([ \t]*)(-#|#{1,3}[ \t]|>)")  # headings, small text, quotes


def neutralise(text: str) -> str:
    """Make stranger text render as plain words: no mention, channel, command or time pill, no
    hidden link target, no invite unfurl, no heading or small text that could pass for a notice."""
    text = _INVISIBLE.sub("", text)
    text = _AT_LOOKALIKES.sub("@" + ZWSP, text)  # "@​everyone" renders as text and never pings
    text = _ANGLE.sub(lambda m: m.group(0) + ZWSP, text)  # "<​@123>", "<​#1>", "<​/cmd:1>", "<​t:1>"
    text = _MASKED_LINK.sub("]" + ZWSP + "(", text)
    text = _INVITE.sub(lambda m: m.group(1) + ZWSP + "." + m.group(2), text)
    return _LINE_MARKUP.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


# ---- user text going to a stranger: never an id, a name, a server or a link to them ----------

_USER_MENTION = re.compile(r"<@!?\d+>")
_ROLE_MENTION = re.compile(r"<@&\d+>")
_CHANNEL_MENTION = re.compile(r"<#\d+>")
_COMMAND_MENTION = re.compile(r"</([\w -]{1,64}):\d+>")
_CUSTOM_EMOJI = re.compile(r"<a?:(\w{1,32}):\d+>")
_GUILD_NAV = re.compile(r"<id:\w+>")
_MESSAGE_LINK = re.compile(
    r"https?://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/channels/[\d@me]+(?:/\d+){1,2}\S*", re.IGNORECASE
)
_CDN_LINK = re.compile(r"https?://(?:cdn\.discordapp\.com|media\.discordapp\.net|images-ext-\d\.discordapp\.net)/\S+", re.IGNORECASE)


def anonymise(text: str) -> str:
    """Replace everything in a user's message that points at a Discord user, role, channel,
    message or file with a neutral word, so the stranger learns nothing about where the user is."""
    text = _USER_MENTION.sub("@someone", text)
    text = _ROLE_MENTION.sub("@some-role", text)
    text = _CHANNEL_MENTION.sub("#some-channel", text)
    text = _COMMAND_MENTION.sub(lambda m: "/" + m.group(1), text)
    text = _CUSTOM_EMOJI.sub(lambda m: ":" + m.group(1) + ":", text)
    text = _GUILD_NAV.sub("#some-channel", text)
    text = _MESSAGE_LINK.sub("[a message link]", text)
    return _CDN_LINK.sub("[a file]", text)


# ---- payloads ------------------------------------------------------------------------------------


def quote_line(quote: str) -> str:
    """The short quote a reply shows above its text (webhooks cannot post native replies): one
    line, cut, and neutralised like all stranger text, so it never pings or hides a link."""
    return "> " + neutralise(cut(" ".join(quote.split()), QUOTE_LIMIT))


def stranger_payloads(text: str, label: str | None, *, webhook: bool, extra: str | None = None,
                      quote: str | None = None, parts: int = MAX_PARTS) -> list[dict]:
    """The message payloads that show one stranger message (at most `parts`, the last cut with a
    marker). Through a webhook the stranger is the author of the whole block; otherwise a bold
    prefix names them on every line. A reply starts with a quote line of what it answers."""
    who = label or "Stranger"
    body = neutralise(text)
    prefix = "" if webhook else f"**{who}:** "
    if prefix:  # the bot also posts notices: every visual line of stranger text says who wrote it
        body = "\n".join(prefix + line for line in body.split("\n") if line.strip())
    if quote and quote.strip():
        body = quote_line(quote) + "\n" + body
    tail = f"\n{extra}" if extra else ""
    size = LIMIT - len(prefix) - len(tail)
    pieces = split(body, size, parts) or [""]
    payloads = []
    for index, part in enumerate(pieces):
        head = "" if part.startswith(prefix) else prefix  # a part that begins inside a long line
        if index == 0 and part.startswith("> "):
            head = ""  # the quote line of a reply stands above the attributed text
        content = head + part + (tail if index == len(pieces) - 1 else "")
        payload: dict = {"content": cut(content, LIMIT), "allowed_mentions": dict(ALLOWED_MENTIONS), "flags": SUPPRESS_EMBEDS}
        if webhook:
            payload["username"] = who
        payloads.append(payload)
    return payloads


def edit_payloads(text: str, label: str | None, *, webhook: bool, parts: int, quote: str | None = None) -> list[dict]:
    """The new contents of the messages showing an edited stranger line: rendered exactly like a
    new line (attributed, neutralised), never more parts than it has, and no author change."""
    payloads = stranger_payloads(text, label, webhook=webhook, quote=quote, parts=parts)
    for payload in payloads:
        payload.pop("username", None)
    return payloads


_EMOJI_PARTS = {"So", "Sk", "Mn", "Me", "Cf"}


def reaction_emoji(emoji: str) -> str | None:
    """The emoji if it is one Unicode emoji Discord can show as a reaction, else None (a custom
    emoji's name:id, words, markup or anything long is never put on a message)."""
    if not emoji or len(emoji) > EMOJI_LIMIT:
        return None
    keycap = "\u20e3" in emoji
    for char in emoji:
        if char.isascii():
            if not (keycap and char in "0123456789#*"):
                return None
        elif unicodedata.category(char) not in _EMOJI_PARTS:
            return None
    if not keycap and not any(unicodedata.category(c) == "So" for c in emoji):
        return None
    return emoji


def merge_note(marker: str) -> str:
    """The outbox's merge marker as Discord shows it: a small line under the merged text."""
    return f"-# ⏳ {marker}"


def notice_payload(event: Event, *, buttons: bool | None = None) -> dict | None:
    """A bridge notice as an embed from the bot: stranger text can only ever be message content,
    so it can never look like one. Waiting and Connected carry the Next/Stop/Report buttons."""
    text = describe(event)
    if text is None:
        return None
    text = neutralise(text)  # interests and questions come from other people
    ended = isinstance(event, Disconnected)
    payload: dict = {
        "content": "",
        "embeds": [{"description": cut(text, 4000), "color": ENDED_COLOUR if ended else NOTICE_COLOUR}],
        "allowed_mentions": dict(ALLOWED_MENTIONS),
        "flags": SUPPRESS_EMBEDS,
    }
    if isinstance(event, Question | ServerNotice):
        payload["embeds"][0]["footer"] = {"text": "stranger-bridge"}
    if buttons if buttons is not None else isinstance(event, Waiting | Connected):
        payload["components"] = [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": _BUTTON_STYLE[cid], "label": label, "custom_id": cid}
                    for cid, label in BUTTONS.items()
                ],
            }
        ]
    return payload


def text_notice(text: str) -> dict:
    """A notice of the platform itself (attachments not sent, ...), rendered like core notices."""
    payload = notice_payload(ServerNotice(text), buttons=False)
    assert payload is not None
    return payload


def undelivered_notice(label: str | None, text: str, count: int = 1) -> dict:
    """The notice that a stranger message (or `count` merged ones) could not be shown, quoting its start."""
    quoted = cut(" ".join(text.split()), 100)
    what = "This message" if count == 1 else f"These {count} messages"
    return text_notice(f"{what} from {label or 'Stranger'} could not be delivered: “{quoted}”")


def thread_name(number: int) -> str:
    """The name of a session thread: no user name in it, so nothing identifies the owner."""
    return f"Stranger chat #{number:04d}"



def mod_log_payloads(text: str, lines: list[tuple[str, str]]) -> list[dict]:
    """One moderation log entry as bot messages: the entry, then the chat lines (each attributed,
    neutralised, on one line), split at line ends so no message passes the limit. No pings, no unfurls."""
    out = [text]
    if lines:
        out.append(f"Last {len(lines)} lines of the reported chat:")
    for who, line in lines:
        line = neutralise(" ".join(cut(line, MOD_LOG_LINE).split()))
        label = who.replace("`", "'")[:32]
        out.append(f"`{label}:` {line}")
    payloads: list[dict] = []
    current = ""
    for part in out:
        if current and len(current) + 1 + len(part) > LIMIT:
            payloads.append(current)
            current = part
        else:
            current = f"{current}\n{part}" if current else part
    payloads.append(current)
    return [{"content": p, "allowed_mentions": ALLOWED_MENTIONS, "flags": SUPPRESS_EMBEDS} for p in payloads]


def mod_entry_text(entry: tuple[str, str]) -> str:
    """A moderation log entry from the core's follower (bridge.policy.logfollow) as Discord text."""
    title, rest = entry
    return f"**{neutralise(title)}**{neutralise(rest)}"
