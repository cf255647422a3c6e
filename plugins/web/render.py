"""Core events as Omegle-protocol event arrays, plus the page's rich-relay extension (pure; the page escapes, JSON carries text as text)."""

from __future__ import annotations

import dataclasses

from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Event,
    Message,
    Question,
    Reaction,
    Reason,
    Retract,
    ServerNotice,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge import fallback
from bridge.hygiene import cut
from bridge.wording import reason_text

__all__ = ["PICTURE_NOT_SHOWN", "SIGNIFICANT", "ends_chat", "plain", "render", "worth_answering"]

PICTURE_NOT_SHOWN = "The stranger sent a picture; pictures are not shown here."
MAX_PLAIN = 65_536  # a plain client's line has no limit of its own: the fallback only adds the quote

# Events every client acts on. A batch holding none of them is held back: python-omegle's
# get_event() blocks forever on a batch made only of events it ignores (commonLikes alone,
# question, statusInfo, count, error, identDigests).
SIGNIFICANT = frozenset(
    {
        "waiting",
        "connected",
        "gotMessage",
        "typing",
        "stoppedTyping",
        "strangerDisconnected",
        "serverMessage",
        "spyMessage",
        "spyTyping",
        "spyStoppedTyping",
        "spyDisconnected",
        # the rich extension (sent only to clients that asked for it at /start)
        "edit",
        "retract",
        "react",
    }
)

_FAILURES = (Reason.ERROR, Reason.REFUSED)


def render(
    event: Event, *, spy: bool = False, wants_likes: bool = False, rich: bool = False, line: str | None = None,
    image: dict | None = None,
) -> list[list]:
    """The protocol events that show `event` to one client.

    `spy`: the client asked the question and watches two labelled strangers.
    `wants_likes`: the client sent topics, so `commonLikes` always comes with `connected`
    (python-omegle's InterestsChat fails on a `connected` without it in the same batch).
    `rich`: the client asked for the extension (our page): messages carry their line id `line`
    (and reply, quote, `image`), and edits, deletions and reactions are events of their own.
    Other clients get the core's text fallback of those (bridge.fallback), or nothing.
    """
    if event.__class__ is Message and event.image is None and (rich or not event.quote):
        return [_message(event, spy, rich, line)]  # most events: a message with no picture and no quote to add
    unseen = isinstance(event, Message) and event.image is not None and image is None
    if not rich and isinstance(event, (Message, Edit, Retract, Reaction)):
        shown = plain(event)
        if shown is None:
            return []
        event = shown
    if unseen:  # pictures are off here (or the client cannot show them): say so, once per picture
        assert isinstance(event, Message)
        notice = ["serverMessage", PICTURE_NOT_SHOWN]
        if not event.text.strip():
            return [notice]
        return [*render(dataclasses.replace(event, image=None), spy=spy, rich=rich, line=line), notice]
    match event:
        case Waiting():
            return [["waiting"]]
        case Connected(common_interests=common, question=question):
            out: list[list] = [["connected"]]
            if common or wants_likes:
                out.append(["commonLikes", list(common)])
            if question:
                out.append(["question", question])
            return out
        case Message(text=text, stranger=label):
            out = [["spyMessage", label, text]] if spy and label else [["gotMessage", text]]
            if rich:
                meta = _meta(event, line, image)
                if meta:
                    out[0].append(meta)
            return out
        case Edit(ref=ref, text=text):
            return [["edit", ref, text]]
        case Retract(ref=ref):
            return [["retract", ref]]
        case Reaction(ref=ref, emoji=emoji, add=add, stranger=label):
            return [["react", ref, emoji, add, label]] if label else [["react", ref, emoji, add]]
        case Typing(stranger=label):
            return [["spyTyping", label]] if spy and label else [["typing"]]
        case StoppedTyping(stranger=label):
            return [["spyStoppedTyping", label]] if spy and label else [["stoppedTyping"]]
        case Question(text=text):
            return [["question", text]]
        case ServerNotice(text=text):
            return [["serverMessage", text]]
        case Disconnected(stranger=label, reason=reason, final=final):
            return _disconnected(event, label, reason, final, spy)
        case _:
            return []


def _message(event: Message, spy: bool, rich: bool, line: str | None) -> list:
    """`render` of a message with no picture (to a plain client also with no quote: its fallback
    is its text, cut as `plain` cuts it)."""
    label = event.stranger
    text = event.text if rich else cut(event.text, MAX_PLAIN)
    item: list = ["spyMessage", label, text] if spy and label else ["gotMessage", text]
    if rich:
        meta = _meta(event, line, None)
        if meta:
            item.append(meta)
    return item


def plain(event: Message | Edit | Retract | Reaction) -> Message | None:
    """What a plain Omegle-protocol client is shown for a rich event, or None (noise): the core's
    one rule table (bridge.fallback): an edit as `* corrected: …`, a reply with a short quote,
    nothing for reactions and deletions. Line ids and pictures stay behind."""
    text = fallback.plain(event, event.quote if isinstance(event, Message) else None, limit=MAX_PLAIN)
    if text is None:
        return None
    return Message(text, event.stranger, image=event.image if isinstance(event, Message) else None)


def _meta(message: Message, line: str | None, image: dict | None) -> dict:
    """The extension's fourth element of a message: its line id, what it answers, its picture."""
    meta: dict = {}
    if line is not None:
        meta["ref"] = line
    if message.reply_to is not None:
        meta["reply"] = message.reply_to
        if message.quote:
            meta["quote"] = message.quote
    if image is not None:
        meta["image"] = image
    return meta


def _disconnected(event: Disconnected, label: str | None, reason: str | None, final: bool, spy: bool) -> list[list]:
    if reason == Reason.USER:
        return []  # the client left itself: in Omegle its id is simply dead, nothing is said
    if not final:
        return [["serverMessage", reason_text(event)]]  # one of three left; the chat goes on
    if reason in (None, Reason.STRANGER):
        return [["spyDisconnected", label]] if spy and label else [["strangerDisconnected"]]
    out: list[list] = [["serverMessage", reason_text(event)]]
    if reason in _FAILURES or reason not in set(Reason):
        out.append(["error", reason_text(event)])
    out.append(["strangerDisconnected"])
    return out


def ends_chat(event: Event) -> bool:
    """Whether showing `event` ends the client's chat (its id is dead once the client has it)."""
    return isinstance(event, Disconnected) and event.final and event.reason != Reason.USER


def worth_answering(batch: list[list]) -> bool:
    """Whether a batch may be sent as an /events answer."""
    return any(item[0] in SIGNIFICANT for item in batch)
