"""What a user's Matrix event means for the stranger (pure): text, command, media or nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .commands import Command, parse

__all__ = ["Ignore", "Media", "Said", "classify", "scrub", "strip_reply_fallback"]

MEDIA = {"m.image": "an image", "m.file": "a file", "m.audio": "an audio clip", "m.video": "a video"}


@dataclass(frozen=True, slots=True)
class Said:
    """Text for the stranger (already scrubbed of Matrix identifiers)."""

    text: str


@dataclass(frozen=True, slots=True)
class Media:
    """The user posted media (other than an image the room relays): only its kind is told."""

    kind: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to do (a notice, an unknown type, an empty body)."""

    why: str


# Matrix identifiers and links that would tell the stranger who or where the user is.
_MATRIX_TO = re.compile(r"https?://matrix\.to/#/\S+", re.IGNORECASE)
_MXC = re.compile(r"mxc://\S+", re.IGNORECASE)
_HOST = r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?"
_MXID = re.compile(r"@[A-Za-z0-9._=\-/+]+:(?:" + _HOST + ")")
_ROOM = re.compile(r"[#!][^\s:]+:(?:" + _HOST + ")")
# Room ids of room version 12 (Synapse's default) have no server part: "!" and 43 base64url characters.
_ROOM_V12 = re.compile(r"![A-Za-z0-9_\-]{20,}")


def scrub(text: str) -> str:
    """Replace Matrix user ids, room ids/aliases, matrix.to links and mxc:// URLs with placeholders."""
    if "@" not in text and "!" not in text and "#" not in text and "/" not in text:
        # Every pattern needs one of these (no other character matches them, ignoring case): most
        # messages have none, and five searches cost more than the rest of reading a message.
        return text
    return _scrub(text)


def _scrub(text: str) -> str:
    """scrub, without its quick answer."""
    text = _MATRIX_TO.sub("[link]", text)
    text = _MXC.sub("[media]", text)
    text = _MXID.sub("[user]", text)
    text = _ROOM.sub("[room]", text)
    return _ROOM_V12.sub("[room]", text)


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted "> " lines a reply puts before its own text (and the blank line after)."""
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0:
        return body
    if i < len(lines) and lines[i] == "":
        i += 1
    return "\n".join(lines[i:])


def classify(
    content: dict[str, Any],
    *,
    prefix: str,
    event_type: str = "m.room.message",
) -> Said | Command | Media | Ignore:
    """What a user's room event means."""
    if event_type == "m.sticker":
        return Media("a sticker")
    if not isinstance(content, dict):
        return Ignore("no content")
    relates = content.get("m.relates_to")
    related = isinstance(relates, dict)  # (most messages relate to nothing: no empty dict made for them)
    edited = related and relates.get("rel_type") == "m.replace"
    if edited:
        new = content.get("m.new_content")
        if not isinstance(new, dict):
            return Ignore("edit without new content")
        content = new
    msgtype = content.get("msgtype")
    body = content.get("body")
    if msgtype == "m.notice":
        return Ignore("notice")  # bots talk in notices: never relay them (no loops)
    if msgtype in MEDIA:
        return Media(MEDIA[msgtype])
    if msgtype not in ("m.text", "m.emote") or not isinstance(body, str):
        return Ignore(f"unsupported msgtype {msgtype!r}")
    if (related and "m.in_reply_to" in relates) or body.startswith("> <"):
        body = strip_reply_fallback(body)
    if not edited:
        command = parse(body, prefix)
        if command is not None:
            return command
    text = scrub(body).strip()
    if not text:
        return Ignore("empty")
    if msgtype == "m.emote":
        text = f"* {text}"
    if edited:
        text = f"(correction) {text}"
    return Said(text)
