"""Stranger-side events as Matrix event contents (pure): attribution, escaping, notices, merging."""

from __future__ import annotations

import html
from typing import Any

from bridge.events import Connected, Disconnected, Event, Message, Question, ServerNotice, Waiting
from bridge.hygiene import clean, split
from bridge.wording import describe

__all__ = [
    "MERGE_MARK",
    "PART_SIZE",
    "ghost_message",
    "in_thread",
    "merge",
    "message",
    "notice",
    "render",
    "size",
    "wire",
]

PART_SIZE = 4000  # characters per event: escaped and UTF-8 encoded it stays far below 64 KiB
PARTS = 3
HTML = "org.matrix.custom.html"


def message(text: str, label: str | None) -> list[dict[str, Any]]:
    """Stranger text as m.text events from the bot, each attributed "Label: text".

    The attribution is a bold element in formatted_body that escaped stranger text can never
    produce; in the plain body every continuation line is indented, so a stranger's line break
    cannot start a fake "Stranger:" or notice line.
    """
    who = clean(label or "Stranger", 40) or "Stranger"
    text = clean(text)
    return [_attributed([(who, part)]) for part in split(text, PART_SIZE, PARTS) if part]


def ghost_message(text: str) -> list[dict[str, Any]]:
    """Stranger text as plain m.text events sent by the stranger's own ghost user (ghost mode).

    The sender already says who speaks, so there is no label and no formatted_body at all:
    a plain body can never become markup, and only the bot's m.notice events are notices.
    """
    text = clean(text)
    return [
        {"msgtype": "m.text", "body": part, "m.mentions": {}, "_lines": [("", part)], "_ghost": True}
        for part in split(text, PART_SIZE, PARTS)
        if part
    ]


def _attributed(lines: list[tuple[str, str]], marker: str | None = None) -> dict[str, Any]:
    body: list[str] = []
    formatted: list[str] = []
    for who, text in lines:
        body.append(f"{who}: " + text.replace("\n", "\n    "))
        formatted.append(f"<b>{html.escape(who)}:</b> " + html.escape(text).replace("\n", "<br>"))
    if marker:
        body.append(marker)
        formatted.append(f"<i>{html.escape(marker)}</i>")
    return {
        "msgtype": "m.text",
        "body": "\n".join(body),
        "format": HTML,
        "formatted_body": "<br>".join(formatted),
        "m.mentions": {},
        # Kept for merging; stripped before sending.
        "_lines": lines,
    }


def notice(text: str) -> dict[str, Any]:
    """A bridge notice: m.notice, plain body only (the text may come from a backend's server)."""
    return {"msgtype": "m.notice", "body": clean(text, PART_SIZE), "m.mentions": {}}


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


MERGE_MARK = "({n} messages arrived at once and were merged into one)"


def merge(contents: list[dict[str, Any]]) -> dict[str, Any]:
    """Several attributed messages as one event, with a visible marker saying how many were merged."""
    if len(contents) == 1:
        return contents[0]
    lines: list[tuple[str, str]] = []
    count = 0
    for content in contents:
        lines.extend(content.get("_lines") or [("Stranger", content.get("body", ""))])
        count += content.get("_count", 1)
    marker = MERGE_MARK.format(n=count)
    if all(content.get("_ghost") for content in contents):
        body = "\n".join(text for _, text in lines) + "\n" + marker
        return {"msgtype": "m.text", "body": body, "m.mentions": {}, "_lines": lines, "_ghost": True, "_count": count}
    merged = _attributed(lines, marker)
    merged["_count"] = count
    return merged


def size(content: dict[str, Any]) -> int:
    """A cheap bound on how big `content` is on the wire (characters of body + formatted_body)."""
    return len(content.get("body", "")) + len(content.get("formatted_body", ""))


def wire(content: dict[str, Any], thread_root: str | None) -> dict[str, Any]:
    """The content as sent: bookkeeping keys dropped, the thread relation added when in a thread."""
    out = {k: v for k, v in content.items() if not k.startswith("_")}
    return in_thread(out, thread_root) if thread_root else out


def in_thread(content: dict[str, Any], root: str) -> dict[str, Any]:
    """Put `content` into the thread rooted at `root` (no reply fallback, no m.in_reply_to)."""
    return {**content, "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}}
