"""Typed events that cross the core, and the envelope that says which side sent them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "ALLOWED",
    "Connected",
    "Disconnected",
    "Edit",
    "Envelope",
    "Event",
    "Image",
    "Message",
    "Mode",
    "Origin",
    "OriginError",
    "Posted",
    "Question",
    "Reaction",
    "Reason",
    "Report",
    "Retract",
    "Room",
    "ServerNotice",
    "Start",
    "StoppedTyping",
    "Typing",
    "Undelivered",
    "Waiting",
    "accepts",
]


class Origin(enum.Enum):
    """Which side handed an event to the core."""

    USER = "user"  # a platform: Discord thread, Matrix room, web client
    STRANGER = "stranger"  # a backend chat
    CORE = "core"  # the bridge itself (notices, synthesised events)


class Mode(str, enum.Enum):
    """How a user wants to meet strangers."""

    RANDOM = "random"  # one stranger, interests optional
    ASK = "ask"  # spy: pose a question, watch two strangers discuss it
    ANSWER = "answer"  # discuss a spy's question with another stranger
    GROUP = "group"  # a room of three; lives while two remain


@dataclass(frozen=True, slots=True)
class Room:
    """Where one session is shown: a Discord thread, a Matrix room or thread, a web client."""

    platform: str
    id: str

    def __str__(self) -> str:
        return f"{self.platform}/{self.id}"


@dataclass(frozen=True, slots=True)
class Start:
    """The user wants a stranger; while chatting it means "next"."""

    backend: str | None = None  # None: the platform's or bridge's default
    interests: tuple[str, ...] = ()
    language: str = "en"
    question: str | None = None  # the spy's question (mode ASK)
    answer_questions: bool = False  # kept for Omegle's wantsspy; implied by mode ANSWER
    mode: Mode = Mode.RANDOM
    strict_interests: bool = False  # never fall back to a random stranger
    # Opaque, platform-scoped key of the person ("discord:<hash>"): used only inside this
    # process (blocks after a report, per-user limits), never sent to a stranger or backend.
    user: str | None = None
    # Where the person starts from, "PLATFORM:ID" (a Discord guild, a Matrix room) or just
    # "PLATFORM"; the core fills in the platform when a platform gives none. In-process only.
    scope: str | None = None
    # Where a partner may come from: each entry "PLATFORM" (any room of it) or "PLATFORM:ID" (that
    # guild or room); empty: anywhere. Only backends with `honours_accept` can keep this promise.
    accept: tuple[str, ...] = ()
    # The home server of a Matrix user ("example.org"), so server bans (matrix:*:SERVER) apply.
    server: str | None = None
    # Who the person is to the pairing itself when `user` is coarser than one person (several
    # Omegle-protocol clients of one network share a hashed-address `user`): two starts with the
    # same pairing key never meet, and a parting cools down this key. None: the same as `user`.
    # Bans, strikes and report blocks keep using `user`. In-process only, like `user`.
    pairing: str | None = None


def accepts(accept: tuple[str, ...], scope: str | None) -> bool:
    """Whether a partner starting from `scope` is one that `accept` (a Start.accept) lets in."""
    if not accept:
        return True
    if scope is None:
        return False
    return any(scope == entry or scope.startswith(entry + ":") for entry in accept)


@dataclass(frozen=True, slots=True)
class Report:
    """The user reports the current stranger: the chat ends and the two are never paired again."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """Queued at the backend; nobody yet."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The chat is live."""

    common_interests: tuple[str, ...] = ()
    question: str | None = None
    strangers: tuple[str, ...] = ("Stranger",)


@dataclass(frozen=True, slots=True)
class Image:
    """A picture a person sent, already decoded and re-encoded by bridge.images (no metadata)."""

    data: bytes
    mime: str  # "image/png", "image/jpeg", "image/gif" or "image/webp"
    width: int
    height: int


# Message references (the rich relay). The core hands out a per-chat reference for every message
# and keeps, per session, a bounded map of reference <-> platform message id on each side, so a
# Discord message id or a Matrix event id never crosses to the other side:
# - A platform hands in its OWN message ids: `Message.ref` is the id of the user's message, and
#   `Edit/Retract/Reaction.ref` and `Message.reply_to` are ids of messages shown in its room (the
#   user's own, or a stranger's line the platform posted and reported with `Posted`).
# - A backend's chat carries only core references ("opaque per-chat strings"), both ways.
# - A platform is delivered events whose `ref`/`reply_to` the core translated back to that
#   platform's own ids; `Message.ref` on delivery is the core reference, which the platform
#   answers with `Posted(ref, id)` once the line is shown. A reference the core cannot map
#   (older than the map, from an earlier chat) is dropped with no error.


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """Text typed by a person; `stranger` labels the speaker when there are several."""

    text: str
    stranger: str | None = None
    ref: str | None = None  # see "Message references" above; None: the side has no message ids
    reply_to: str | None = None  # the message this one answers, as a reference
    quote: str | None = None  # delivery only: a short, cleaned excerpt of the message replied to
    image: Image | None = None  # an attached picture (images are opt-in per platform and room)

    def __init__(
        self, text: str, stranger: str | None = None, ref: str | None = None, reply_to: str | None = None,
        quote: str | None = None, image: Image | None = None,
    ) -> None:  # fmt: skip
        # The generated frozen __init__, by hand: several are built per relayed message, and
        # writing the slots through their descriptors takes half the time of the generated
        # object.__setattr__ per field. The same fields and defaults (a test compares them).
        _SET_TEXT(self, text)
        _SET_STRANGER(self, stranger)
        _SET_REF(self, ref)
        _SET_REPLY_TO(self, reply_to)
        _SET_QUOTE(self, quote)
        _SET_IMAGE(self, image)


_SET_TEXT, _SET_STRANGER, _SET_REF, _SET_REPLY_TO, _SET_QUOTE, _SET_IMAGE = (
    Message.__dict__[name].__set__ for name in ("text", "stranger", "ref", "reply_to", "quote", "image")
)


@dataclass(frozen=True, slots=True)
class Edit:
    """A person changed the text of one of their messages."""

    ref: str
    text: str
    stranger: str | None = None


@dataclass(frozen=True, slots=True)
class Retract:
    """A person deleted one of their messages: the other side removes it too."""

    ref: str
    stranger: str | None = None


@dataclass(frozen=True, slots=True)
class Reaction:
    """A person added (or removed) an emoji reaction to a message of either side."""

    ref: str
    emoji: str
    add: bool = True
    stranger: str | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """User side: the platform showed the stranger's message `ref` (a core reference) as its own
    message `id`, so later edits, deletions and reactions can find it."""

    ref: str
    id: str


@dataclass(frozen=True, slots=True)
class Typing:
    """The speaker started typing."""

    stranger: str | None = None


@dataclass(frozen=True, slots=True)
class StoppedTyping:
    """The speaker stopped typing (Omegle never says so after a message: the core synthesises it)."""

    stranger: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """Spy mode: the question the strangers discuss."""

    text: str


@dataclass(frozen=True, slots=True)
class ServerNotice:
    """Text that no person typed: from the backend's server or from the bridge itself."""

    text: str


class Reason(str, enum.Enum):
    """Why a chat ended; a backend may also give free text (an Omegle `error`, a ban)."""

    STRANGER = "stranger"  # the stranger left
    USER = "user"  # the user stopped or left the room
    REPORT = "report"  # the user reported the stranger (a backend that keeps the two apart for good)
    REPORT_RECORDED = "report_recorded"  # likewise, on a backend that cannot keep them apart
    POLICY = "policy"  # a message broke the content policy with the action "end"
    TIMEOUT = "timeout"  # nobody found within the search timeout
    ERROR = "error"  # the backend failed or the connection died
    SHUTDOWN = "shutdown"  # the daemon is stopping
    RESTART = "restart"  # the daemon restarted and could not resume the chat
    REFUSED = "refused"  # the backend refused: captcha, ban, bad request

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Disconnected:
    """End of the chat, or of one stranger in a group; from the user side it means "stop"."""

    stranger: str | None = None  # who left, when there were several ("Stranger 1", "Bob")
    reason: str | None = None  # a Reason value, or free text from a backend
    final: bool = True  # False: one stranger left a group and the chat goes on
    # True: the chat failed and the stranger service's own notice, shown just before, said why;
    # renderers then say only that the chat ended (one failure, one notice).
    explained: bool = False
    # Reason.REPORT only: for how many days the backend keeps the two apart; None: for good.
    apart_days: float | None = None


@dataclass(frozen=True, slots=True)
class Undelivered:
    """User side: the platform took a stranger's message but could not show it (it gave up later).

    The core tells the stranger about that very message; the platform tells its own room.
    """

    text: str


Event = (
    Start
    | Report
    | Waiting
    | Connected
    | Message
    | Typing
    | StoppedTyping
    | Question
    | ServerNotice
    | Disconnected
    | Undelivered
    | Edit
    | Retract
    | Reaction
    | Posted
)

# Which event kinds each side may hand in; the core rejects the rest.
ALLOWED: dict[Origin, tuple[type, ...]] = {
    Origin.USER: (
        Start,
        Report,
        Message,
        Typing,
        StoppedTyping,
        Disconnected,
        Undelivered,
        Edit,
        Retract,
        Reaction,
        Posted,
    ),
    Origin.STRANGER: (
        Waiting,
        Connected,
        Message,
        Edit,
        Retract,
        Reaction,
        Typing,
        StoppedTyping,
        Question,
        ServerNotice,
        Disconnected,
    ),
    Origin.CORE: (
        Waiting,
        Connected,
        Message,
        Edit,
        Retract,
        Reaction,
        Typing,
        StoppedTyping,
        Question,
        ServerNotice,
        Disconnected,
    ),
}


class OriginError(ValueError):
    """An event was handed in by a side that cannot produce it."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """An event with its routing data: the room it concerns and the side that handed it in."""

    room: Room
    origin: Origin
    event: Event = field()

    def __post_init__(self) -> None:
        if not isinstance(self.event, ALLOWED[self.origin]):
            raise OriginError(f"{type(self.event).__name__} cannot come from the {self.origin.value} side")
