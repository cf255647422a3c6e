"""Omegle wire events into core events for one chat, pure: the `Translator` and the notices it shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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
from bridge.hygiene import clean

from .protocol import (
    SPY_LABELS,
    AntinudeBanned,
    CommonLikes,
    ConnectionDied,
    Count,
    Error,
    GotMessage,
    OmegleConnected,
    OmegleEvent,
    OmegleQuestion,
    OmegleStoppedTyping,
    OmegleTyping,
    OmegleWaiting,
    RecaptchaRejected,
    RecaptchaRequired,
    ServerMessage,
    SpyDisconnected,
    SpyMessage,
    SpyStoppedTyping,
    SpyTyping,
    StatusInfo,
    StrangerDisconnected,
    SuggestSpyee,
)

__all__ = ["BANNED_TEXT", "CAPTCHA_REJECTED_TEXT", "CAPTCHA_TEXT", "DIED_TEXT", "MAX_SERVER_TEXT", "SUGGEST_SPYEE_TEXT", "Translator"]

MAX_SERVER_TEXT = 500  # characters of server-sent free text (errors, notices) shown to a user
CAPTCHA_TEXT = "The stranger service asks for a captcha, which can only be solved in its own web page."
CAPTCHA_REJECTED_TEXT = "The stranger service rejected the captcha."
BANNED_TEXT = "The stranger service has banned this bridge for a while."
DIED_TEXT = "The stranger service lost this chat."
SUGGEST_SPYEE_TEXT = "The stranger service suggests answering questions (answer mode)."


@dataclass
class Translator:
    """Turns protocol events into core events for one chat, batch by batch.

    It remembers whether the chat is connected (events before `connected` imply it), folds
    `commonLikes` and `question` of the connecting batch into one Connected, labels spy events,
    and ends the stream with one final Disconnected. `count` keeps the last online figure.
    """

    spy: bool = False  # we asked the question: two labelled strangers
    connected: bool = False
    done: bool = False
    count: int | None = None
    _likes: tuple[str, ...] = field(default=(), repr=False)  # seen before `connected`
    _question: str | None = field(default=None, repr=False)  # seen before `connected`, or shown

    def batch(self, events: Iterable[OmegleEvent]) -> list[Event]:
        """Core events for one /start or /events batch; nothing after the final Disconnected."""
        events = list(events)
        if not self.connected:
            # commonLikes and question follow `connected` in its batch: gather them first.
            for event in events:
                if type(event) is CommonLikes:
                    self._likes = event.likes
                elif type(event) is OmegleQuestion:
                    self._question = event.text
        out: list[Event] = []
        for event in events:
            if self.done:
                break
            out.extend(self._one(event))
        return out

    def _connect(self) -> list[Event]:
        if self.connected:
            return []
        self.connected = True
        strangers = SPY_LABELS if self.spy else ("Stranger",)
        return [Connected(common_interests=self._likes, question=self._question, strangers=strangers)]

    def _end(self, notice: str | None, reason: str, stranger: str | None = None) -> list[Event]:
        self.done = True
        out: list[Event] = [ServerNotice(notice)] if notice else []
        out.append(Disconnected(stranger=stranger, reason=reason, final=True))
        return out

    def _one(self, event: OmegleEvent) -> list[Event]:
        match event:
            case OmegleWaiting():
                return [] if self.connected else [Waiting()]
            case OmegleConnected():
                return self._connect()
            case CommonLikes() | OmegleQuestion() if not self.connected:
                return []  # folded into Connected when `connected` is in the batch
            case CommonLikes():
                return []
            case OmegleQuestion(text=text):
                if text == self._question:
                    return []
                self._question = text
                return [Question(text)]
            case GotMessage(text=text):
                return [*self._connect(), Message(text)]
            case OmegleTyping():
                return [*self._connect(), Typing()]
            case OmegleStoppedTyping():
                return [StoppedTyping()] if self.connected else []
            case StrangerDisconnected():
                return self._end(None, Reason.STRANGER)
            case SpyMessage(who=who, text=text):
                return [*self._connect(), Message(text, who)]
            case SpyTyping(who=who):
                return [*self._connect(), Typing(who)]
            case SpyStoppedTyping(who=who):
                return [StoppedTyping(who)] if self.connected else []
            case SpyDisconnected(who=who):
                return self._end(None, Reason.STRANGER, who)
            case ServerMessage(text=text):
                return [ServerNotice(_server_text(text))]
            case StatusInfo(count=count) | Count(count=count):
                if count is not None:
                    self.count = count
                return []
            case SuggestSpyee():
                return [] if self.connected else [ServerNotice(SUGGEST_SPYEE_TEXT)]
            case RecaptchaRequired():
                return self._end(CAPTCHA_TEXT, Reason.REFUSED)
            case RecaptchaRejected():
                return self._end(CAPTCHA_REJECTED_TEXT, Reason.REFUSED)
            case AntinudeBanned():
                return self._end(BANNED_TEXT, Reason.REFUSED)
            case Error(text=text):
                detail = _server_text(text) if text else "no detail"
                return self._end(f"The stranger service reported an error: {detail}", Reason.ERROR)
            case ConnectionDied():
                return self._end(DIED_TEXT, Reason.ERROR)
        return []


def _server_text(text: str) -> str:
    return clean(text, MAX_SERVER_TEXT).strip() or "(empty)"
