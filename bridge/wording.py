"""Default English wording of core and stranger-side events, shared by every platform's renderer."""

from __future__ import annotations

from .events import Connected, Disconnected, Event, Question, Reason, ServerNotice, Waiting
from .hygiene import cut

__all__ = ["NOT_ALL_DELIVERED", "ROOM_NOT_SHOWN", "ROOM_NOT_SHOWN_UNTOLD", "describe", "not_delivered", "reason_text"]

# Sent to a stranger (as a message: a chat carries nothing else) when some of the user's
# messages to them were dropped on the way, so neither side is left unaware.
NOT_ALL_DELIVERED = "[bridge] Some messages to you were not delivered: they came faster than they could be passed on."
# Told to a room when a stranger's message could not be shown in it (once per run of failures).
ROOM_NOT_SHOWN = "A message from the stranger could not be shown here; the stranger was told it was not delivered."
ROOM_NOT_SHOWN_UNTOLD = "A message from the stranger could not be shown here."


def not_delivered(text: str) -> str:
    """Sent to a stranger whose message could not be shown: names that very message."""
    return f"[bridge] Your message was not delivered: “{cut(text, 60)}”"


_REASONS: dict[str, str] = {
    Reason.STRANGER: "{who} has disconnected.",
    Reason.USER: "You have disconnected.",
    Reason.REPORT: "You reported {who}. You will not be paired with them again.",
    Reason.REPORT_RECORDED: (
        "You reported {who}. The report was recorded, but this stranger service cannot keep you "
        "from meeting them again."
    ),
    Reason.POLICY: "The chat has ended: a message broke this bridge's rules.",
    Reason.TIMEOUT: "Nobody was found in time. Start again to keep looking.",
    Reason.ERROR: "The connection to the stranger was lost.",
    Reason.SHUTDOWN: "The bridge is shutting down; this chat has ended.",
    Reason.RESTART: "The bridge restarted and could not resume this chat; it has ended.",
    Reason.REFUSED: "The stranger service refused the chat.",
}


def reason_text(event: Disconnected) -> str:
    """What a Disconnected means, in a sentence a user understands."""
    who = event.stranger or "Stranger"
    if event.explained:
        return "The chat has ended."
    template = _REASONS.get(event.reason or Reason.STRANGER)
    if template is None:  # free text from a backend (an Omegle "error", a ban)
        return f"{who} has disconnected ({event.reason})."
    text = template.format(who=who)
    if event.reason == Reason.REPORT and event.apart_days is not None:
        text = text.removesuffix(".") + f" for {_span(event.apart_days)}."
    return text


def _span(days: float) -> str:
    """A block's length in words: "30 days", "1 day", "12 hours"."""
    if days >= 1:
        whole = round(days)
        return f"{whole} day" if whole == 1 else f"{whole} days"
    hours = max(1, round(days * 24))
    return f"{hours} hour" if hours == 1 else f"{hours} hours"


def describe(event: Event) -> str | None:
    """The notice text for a non-message event; None for kinds a notice does not show."""
    match event:
        case Waiting():
            return "Looking for someone you can chat with..."
        case Connected(common_interests=common, strangers=strangers, question=question):
            if len(strangers) > 1 and question:
                text = "You're now watching two strangers discuss your question!"
            elif len(strangers) > 1:
                text = f"You're now chatting with {len(strangers)} strangers. Say hi!"
            elif question:
                text = f"You're now discussing this question with a stranger: {question}"
            else:
                text = "You're now chatting with a random stranger. Say hi!"
            if common:
                text += " You both like " + _join(common) + "."
            return text
        case Question(text=text):
            return f"Question to discuss: {text}"
        case ServerNotice(text=text):
            return text
        case Disconnected():
            return reason_text(event)
        case _:
            return None


def _join(items: tuple[str, ...]) -> str:
    quoted = [f"“{i}”" for i in items]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]
