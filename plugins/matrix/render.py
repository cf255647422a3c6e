"""Stranger-side events as Matrix event contents (pure): attribution, escaping, notices, merge markers."""

from __future__ import annotations

import html
from typing import Any

from bridge.events import Connected, Disconnected, Event, Message, Question, ServerNotice, Waiting
from bridge.hygiene import clean, split
from bridge.wording import describe

__all__ = [
    "PART_SIZE",
    "QUOTE_SIZE",
    "edit",
    "ghost_message",
    "image",
    "in_thread",
    "message",
    "notice",
    "reaction",
    "reaction_key",
    "redaction",
    "render",
    "replying",
    "undelivered",
    "wire",
]

PART_SIZE = 4000  # characters per event: escaped and UTF-8 encoded it stays far below 64 KiB
PARTS = 3
QUOTE_SIZE = 120  # characters of the replied-to message quoted in a reply's body
KEY_SIZE = 32  # characters of a reaction key
HTML = "org.matrix.custom.html"
INDENT = "    "  # before each continuation line of a stranger's message in the body
HTML_INDENT = "&nbsp;" * 4  # the same in formatted_body (plain spaces would collapse)


def message(text: str, label: str | None, marker: str | None = None) -> list[dict[str, Any]]:
    """Stranger text as m.text events from the bot, each attributed "Label: text".

    The attribution is a bold element in formatted_body that escaped stranger text can never
    produce; in the body and in formatted_body every continuation line is indented, so each
    visual line is visibly part of the attributed block and a stranger's line break cannot start
    a fake "Stranger:" or notice line. `marker` (the outbox's merge marker, bridge text) ends
    the last part on a line of its own, unindented: no stranger line can look like it.
    """
    who = "Stranger" if label is None else clean(label, 40) or "Stranger"
    text = clean(text)
    if len(text) <= PART_SIZE:  # most messages: one part (what split gives for it)
        return [_attributed(who, text, marker)] if text else []
    parts = [part for part in split(text, PART_SIZE, PARTS) if part]
    return [_attributed(who, part, marker if n == len(parts) - 1 else None) for n, part in enumerate(parts)]


def ghost_message(text: str, marker: str | None = None) -> list[dict[str, Any]]:
    """Stranger text as plain m.text events sent by the stranger's own ghost user (ghost mode).

    The sender already says who speaks, so there is no label and no formatted_body at all:
    a plain body can never become markup, and only the bot's m.notice events are notices.
    """
    parts = [part for part in split(clean(text), PART_SIZE, PARTS) if part]
    if marker and parts:
        parts[-1] += "\n" + marker
    return [{"msgtype": "m.text", "body": part, "m.mentions": {}} for part in parts]


def _attributed(who: str, text: str, marker: str | None) -> dict[str, Any]:
    body = f"{who}: " + text.replace("\n", "\n" + INDENT)
    formatted = f"<b>{html.escape(who)}:</b> " + html.escape(text).replace("\n", "<br>" + HTML_INDENT)
    if marker:
        body += "\n" + marker
        formatted += f"<br><i>{html.escape(marker)}</i>"
    return {"msgtype": "m.text", "body": body, "format": HTML, "formatted_body": formatted, "m.mentions": {}}


def notice(text: str) -> dict[str, Any]:
    """A bridge notice: m.notice, plain body only (the text may come from a backend's server)."""
    return {"msgtype": "m.notice", "body": clean(text, PART_SIZE), "m.mentions": {}}


def undelivered(count: int) -> str:
    """The notice text for stranger messages the homeserver never took (given up after bounded retries)."""
    if count == 1:
        return "1 message from the stranger could not be delivered here."
    return f"{count} messages from the stranger could not be delivered here."


def render(event: Event) -> list[dict[str, Any]]:
    """The contents to send for a stranger-side or core event; [] for kinds shown otherwise (typing)."""
    match event:
        case Message(text=text, stranger=label):
            return message(text, label)
        case Waiting() | Connected() | Question() | ServerNotice() | Disconnected():
            text = describe(event)
            return [notice(text)] if text else []
        case _:
            return []


def wire(content: dict[str, Any], thread_root: str | None) -> dict[str, Any]:
    """The content as sent: the thread relation added when in a thread (an edit or a reaction
    relates to its target instead: it is shown wherever the target is)."""
    relates = content.get("m.relates_to")
    if thread_root is None or (isinstance(relates, dict) and "rel_type" in relates):
        return content
    return in_thread(content, thread_root)


def in_thread(content: dict[str, Any], root: str) -> dict[str, Any]:
    """Put `content` into the thread rooted at `root`; a reply in it keeps its m.in_reply_to
    (not falling back), anything else gets no reply relation."""
    relates = content.get("m.relates_to")
    reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
    if isinstance(reply, dict):
        return {**content, "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": False,
                                            "m.in_reply_to": reply}}
    return {**content, "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}}


# ---- the rich relay: replies, edits, reactions, redactions, images ---------------------------


def replying(content: dict[str, Any], target: str, quote: str | None) -> dict[str, Any]:
    """A stranger's message as a reply to event `target`: the relation, and the quote (a cleaned
    excerpt the core made) as one plain "> " line before the text, never as a pill or mx-reply."""
    out = {**content, "m.relates_to": {"m.in_reply_to": {"event_id": target}}}
    excerpt = " ".join(clean(quote or "", QUOTE_SIZE).split())
    if excerpt:
        out["body"] = f"> {excerpt}\n\n{content['body']}"
        if "formatted_body" in content:
            out["formatted_body"] = f"<blockquote>{html.escape(excerpt)}</blockquote>{content['formatted_body']}"
    return out


def edit(new: dict[str, Any], target: str) -> dict[str, Any]:
    """The `m.replace` of event `target` with content `new` (its relation and m.mentions kept out
    of m.new_content), with the "* " fallback for clients that do not show edits."""
    inner = {k: v for k, v in new.items() if k != "m.relates_to"}
    inner["m.mentions"] = {}
    out: dict[str, Any] = {"msgtype": inner["msgtype"], "body": "* " + inner["body"], "m.new_content": inner,
                           "m.relates_to": {"rel_type": "m.replace", "event_id": target}, "m.mentions": {}}
    if "formatted_body" in inner:
        out["format"] = inner["format"]
        out["formatted_body"] = "* " + inner["formatted_body"]
    return out


def reaction_key(key: str) -> str:
    """A reaction key as shown: cleaned, on one line, bounded ("" when nothing is left)."""
    return " ".join(clean(key, KEY_SIZE).split())


def reaction(target: str, key: str) -> dict[str, Any]:
    """An `m.reaction` annotating event `target` with `key` (already cleaned with reaction_key)."""
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}, "m.mentions": {}}


def redaction() -> dict[str, Any]:
    """The body of a redaction request: no reason (a reason would be text from a stranger)."""
    return {"m.mentions": {}}


def image(where: dict[str, Any], mime: str, width: int, height: int, size: int, label: str | None, *,
          ghost: bool) -> dict[str, Any]:
    """An m.image of a picture re-uploaded to our homeserver: `where` is {"url": our own mxc:// URL}
    or, in an encrypted room, {"file": the encrypted file}. The body (alt text) names the speaker
    in bot mode; no file name of the sender is kept."""
    ext = mime.partition("/")[2] or "img"
    who = clean(label or "Stranger", 40) or "Stranger"
    return {"msgtype": "m.image", "body": f"image.{ext}" if ghost else f"{who}: image.{ext}", **where,
            "info": {"mimetype": mime, "w": width, "h": height, "size": size}, "m.mentions": {}}
