"""Default English wording of core and stranger-side events, shared by every platform's renderer."""

from __future__ import annotations

from .events import Connected, Disconnected, Event, Question, Reason, ServerNotice, Waiting

__all__ = ["describe", "reason_text"]

_REASONS: dict[str, str] = {
    Reason.STRANGER: "{who} has disconnected.",
    Reason.USER: "You have disconnected.",
    Reason.REPORT: "You reported {who}. You will not be paired with them again.",
    Reason.TIMEOUT: "Nobody was found in time. Start again to keep looking.",
    Reason.ERROR: "The connection to the stranger was lost.",
    Reason.SHUTDOWN: "The bridge is shutting down; this chat has ended.",
    Reason.RESTART: "The bridge restarted and could not resume this chat; it has ended.",
    Reason.REFUSED: "The stranger service refused the chat.",
}


def reason_text(event: Disconnected) -> str:
    """What a Disconnected means, in a sentence a user understands."""
    who = event.stranger or "Stranger"
    template = _REASONS.get(event.reason or Reason.STRANGER)
    if template is None:  # free text from a backend (an Omegle "error", a ban)
        return f"{who} has disconnected ({event.reason})."
    return template.format(who=who)


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
