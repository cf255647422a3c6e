"""Core events as Omegle-protocol event arrays (pure; the page escapes, JSON carries text as text)."""

from __future__ import annotations

from bridge.events import (
    Connected,
    Disconnected,
    Event,
    Message,
    Question,
    Reason,
    ServerNotice,
    StoppedTyping,
    Typing,
    Waiting,
)
from bridge.wording import reason_text

__all__ = ["SIGNIFICANT", "ends_chat", "render", "worth_answering"]

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
    }
)

_FAILURES = (Reason.ERROR, Reason.REFUSED)


def render(event: Event, *, spy: bool = False, wants_likes: bool = False) -> list[list]:
    """The protocol events that show `event` to one client.

    `spy`: the client asked the question and watches two labelled strangers.
    `wants_likes`: the client sent topics, so `commonLikes` always comes with `connected`
    (python-omegle's InterestsChat fails on a `connected` without it in the same batch).
    """
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
            return [["spyMessage", label, text]] if spy and label else [["gotMessage", text]]
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
