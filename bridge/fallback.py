"""The one rule table for sides that carry only text: what an edit, reply, reaction, deletion or picture becomes."""

from __future__ import annotations

from dataclasses import dataclass

from .events import Edit, Image, Message, Reaction, Retract
from .hygiene import cut

__all__ = ["CORRECTED", "Fallback", "QUOTE", "RULES", "plain", "quoted"]

CORRECTED = "* corrected: "  # what people type by hand on Omegle-style chats
QUOTE = 60  # characters of the quoted line in a reply


@dataclass(frozen=True, slots=True)
class Fallback:
    """What one rich event becomes for a text-only side.

    `sends`: whether the other side gets a line of text at all; `notice`: what the sender is told
    (once per chat), because the rich thing they did does not reach the other side as they see it.
    """

    sends: bool
    notice: str | None = None
    why: str = ""


# Reactions would be noise in a text chat, and a line cannot be unsent: the person who deleted is
# told so, rather than left believing the stranger no longer sees it. A picture is not sent at all.
RULES: dict[type, Fallback] = {
    Message: Fallback(True, why="a reply is the message with a short quote of the line it answers"),
    Edit: Fallback(True, why="an edit is a new line: '* corrected: ' and the new text"),
    Reaction: Fallback(False, why="a reaction is not shown: a line per emoji would drown the chat"),
    Retract: Fallback(
        False,
        "The stranger's chat cannot remove messages: they may still see the one you deleted.",
        why="a sent line cannot be taken back; the sender is told",
    ),
    Image: Fallback(False, "Your picture was not sent: the stranger's chat carries only text.", why="text only"),
}


def quoted(text: str, quote: str | None, limit: int = 4000) -> str:
    """A reply as one text line block: a short quote of the line it answers, then the message."""
    if not quote:
        return cut(text, limit)
    head = f"> {cut(quote, QUOTE)}\n"
    if len(head) + len(text) > limit:
        return cut(text, limit)  # the message itself matters more than the quote
    return head + text


def plain(event: object, quote: str | None = None, limit: int = 4000) -> str | None:
    """The text a text-only side gets for `event` (None: nothing is sent), cut to `limit`."""
    match event:
        case Message(text=text):
            return quoted(text, quote, limit)
        case Edit(text=text):
            return cut(CORRECTED + text, limit)
        case _:
            return None
