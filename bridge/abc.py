"""The plugin interfaces: Platform (where users are), Backend and Chat (where strangers come from)."""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator, Callable
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator, model_validator

from .events import Event, Room, Start
from .metrics import Metrics

if TYPE_CHECKING:
    from .config import ImageLimits
    from .policy.moderator import Moderator

__all__ = ["Backend", "Chat", "CredentialsError", "KeyValue", "Platform", "PluginConfig", "StrictModel", "Submit", "Taker"]

# submit(room, event) hands a user-side event to the core. It never blocks and never raises for
# a full inbox: the core answers an overflow with a notice in the room. Returns False when the
# event was refused (unknown kind, shutting down, overflow), so a platform may tell its user.
Submit = Callable[[Room, Event], bool]


class StrictModel(BaseModel):
    """Base of every configuration table: unknown keys, `inf`/`nan` and true/false for numbers are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax validation reads `true` as 1: a count or a rate of "true" is a typo, not a number.
        if isinstance(value, bool) and info.field_name is not None:
            if bool not in _types(cls.model_fields[info.field_name].annotation):
                raise ValueError("must be a number, not true or false")
        return value


def _types(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


class PluginConfig(StrictModel):
    """Base of every plugin's own configuration table; unknown keys are errors."""

    plugin: str
    backend: str | None = None  # platforms only: override of [bridge] default_backend

    #: Options a plugin no longer has: key -> why it went and what to do instead. A config that
    #: still sets one is refused with that text (not the generic "extra key" error).
    removed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed_options(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, why in cls.removed.items():
                if key in data:
                    raise ValueError(why)
        return data

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> PluginConfig:
        for key in type(self).model_fields:
            value = getattr(self, key)
            if isinstance(value, SecretStr) and _is_placeholder(value.get_secret_value()):
                raise ValueError(f"{key}: placeholder secret; set the real value (or the environment variable)")
        return self


# Phrases long enough never to turn up by chance in a random token: refused anywhere in a secret.
_PLACEHOLDERS = ("CHANGE-ME", "CHANGEME", "CHANGE_ME", "REPLACE-ME", "YOUR-TOKEN", "YOUR_TOKEN")
# Short marks are refused only as a word of their own ("token-XXXX", "TODO") or as the whole value:
# about one real Synapse token in a thousand holds "xxx" somewhere, in some case.
_PLACEHOLDER_WORD = re.compile(r"(?<![A-Za-z0-9])(?:X{3,}|TODO|FIXME)(?![A-Za-z0-9])|^(?:x{3,}|todo|\.{3}|…)$", re.I)


def _is_placeholder(secret: str) -> bool:
    text = secret.strip()
    upper = text.upper()
    if not text or upper.startswith("<") or any(mark in upper for mark in _PLACEHOLDERS):
        return True
    return _PLACEHOLDER_WORD.search(text) is not None


class CredentialsError(Exception):
    """Raised by a plugin whose credentials were refused for good (a wrong password, a revoked token).

    Retrying cannot help: raised from `run` before the plugin is ready, the daemon exits with
    status 2 and this message. The message names what was refused, never the secret itself.
    """


class Taker(Protocol):
    """What `Chat.feed` hands events to: the session iterating the chat."""

    def take(self, event: Event) -> bool:
        """Take one of the chat's events now; False: not now (it waits in the chat's `events()`)."""
        ...


class KeyValue(Protocol):
    """A plugin's own persisted key/value space (sync tokens, last seen ids, webhook ids)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str | None) -> None: ...

    async def add(self, key: str, amount: int = 1) -> int:
        """Add to an integer value in one atomic step (instances sharing a store never lose one)."""
        ...

    async def update(self, key: str, change: Callable[[str | None], Any]) -> Any:
        """Change a value atomically: `change(old)` (sync or async) gives (new value, result); it
        is called again when another writer changed the key in between (see bridge.store.Store.update)."""
        ...

    async def spend_shared(self, key: str, rate: float, burst: float, cooldown: float = 0.0) -> float | None:
        """A limit every instance sharing the store counts together (see bridge.store.Store.spend_shared):
        0.0 taken, else seconds to wait; None when nobody shares the store (count it in the process)."""
        ...


class Platform(abc.ABC):
    """Where users are: one configured account (a Discord bot, a Matrix user, the web server).

    A platform turns native activity into user-side events and hands them to the core with
    `submit`; the core calls `deliver` to show stranger-side events. It never holds the core.
    """

    Config: ClassVar[type[PluginConfig]] = PluginConfig

    #: Whether a user can still report the stranger after a chat ended. True (the default) makes
    #: the core keep a small, bounded record of each ended chat for a while; a platform with no
    #: "report" command sets False, so nothing of its ended chats is kept.
    reports_after_end: ClassVar[bool] = True

    #: Whether this platform's rooms outlive the process (Discord threads, Matrix rooms): a stop
    #: may then leave their resumable chats for the next run. False (web clients): they end.
    rooms_persist: ClassVar[bool] = False

    def __init__(self, name: str, config: Any, submit: Submit, state: KeyValue, metrics: Metrics | None = None) -> None:
        self.name = name
        self.config = config
        self.submit = submit  # hand user-side events to the core
        self.state = state  # this platform's persisted key/value space
        self.metrics = metrics or Metrics()  # read-only figures for status pages
        # The core's bridge.policy Moderator (bans, strikes, content policy), set by the daemon
        # before `run`; admin surfaces use it. None when the platform runs without the daemon.
        self.moderator: Moderator | None = None
        # The [bridge.images] limits, set by the daemon before `run`: a platform that lets pictures
        # through hands each file to bridge.images.prepare(data, image_limits) before `submit`.
        # None when the platform runs without the daemon (then bridge.config.ImageLimits() applies).
        self.image_limits: ImageLimits | None = None

    @abc.abstractmethod
    async def run(self) -> None:
        """Connect and listen until cancelled. Called once by the daemon in its own task."""

    async def ready(self) -> None:
        """Wait until the platform can deliver. The daemon awaits it before resuming sessions.

        Default: ready at once.
        """

    @abc.abstractmethod
    async def deliver(self, room: Room, event: Event) -> None:
        """Show a stranger-side or core event in `room`. Called by the room's session task.

        May raise: the core retries a bounded number of times, then logs and drops the event.
        Kinds a platform cannot show are ignored.
        """

    async def flush(self) -> None:
        """Push out anything still queued for delivery. Called at shutdown before `run` is cancelled.

        Default: nothing (a platform that delivers synchronously has nothing queued).
        """

    def scale_out(self, store: Any) -> None:
        """Called before `run` when the daemon's store is shared by several instances (Redis): the
        web platform serves every instance's clients through it. Default: nothing."""

    def rooms_active(self, rooms: list[Room]) -> None:
        """Told once at start, before `run`, which of this platform's rooms have a session a
        previous run left (the core resumes or ends each once every platform is ready). Default: nothing."""

    def scope_of(self, room: Room) -> str | None:
        """The moderation scope `room` belongs to ([policy.scopes."NAME:SCOPE"]): a Discord
        guild id, a Matrix room id. Called by the session for every message. Default: None
        (the platform's own policy applies).
        """
        return None


class Chat(abc.ABC):
    """One conversation with a stranger (two in spy mode, two in a three-person room)."""

    __slots__ = ()  # lets small chats (the hub's) use slots; others simply get a __dict__

    #: What `Backend.resume` needs to take this chat up again after a restart; None: cannot.
    handle: str | None = None
    #: True only where a report keeps the two people apart for good (the hub's chats). Elsewhere
    #: the report confirmation must not promise "never paired again".
    enforces_blocks: ClassVar[bool] = False
    #: True where the chat carries the rich events both ways (Edit, Retract, Reaction, message
    #: references, pictures: the hub's chats). False: the core turns them into plain text by the
    #: one rule table in bridge.fallback (an edit becomes "* corrected: ...", a reaction nothing).
    rich: ClassVar[bool] = False

    @property
    def survives_restart(self) -> bool:
        """Whether a stop may leave this chat for the next run to resume (its room is told nothing).
        Default: False (the chat ends with the daemon)."""
        return False

    def apart_days(self) -> float | None:
        """Where `enforces_blocks`: for how many days a report keeps the two apart. None: for good."""
        return None

    def stranger_key(self) -> str | None:
        """The user key of the person on the other side, where the backend knows one (the hub:
        another session of this bridge). Used only as input to strikes, never shown. Default: None.
        """
        return None

    @abc.abstractmethod
    def events(self) -> AsyncIterator[Event]:
        """Stranger-side events in order; ends after Disconnected. Iterated by one session task."""

    def feed(self, taker: Taker | None) -> None:
        """Optional, for chats whose events are pushed in process (the hub's): hand each new event
        to `taker.take` at once, while none waits in `events()` before it; it returns False when
        it cannot have the event now, which then goes through `events()` as usual, in order. This
        spares each message a hop through the iterating task. None: stop. Default: `events()` only."""

    @abc.abstractmethod
    async def send(self, event: Event) -> None:
        """Send a user-side event (Message, Typing, StoppedTyping) to the stranger."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Leave the chat (the stranger is told, where the protocol can). Idempotent."""


class Backend(abc.ABC):
    """Where strangers come from. Started and stopped by the daemon as an async context manager."""

    Config: ClassVar[type[PluginConfig]] = PluginConfig

    #: Longest message the protocol carries; longer user text is refused with a notice.
    max_message_length: ClassVar[int] = 4000

    #: Whether `connect` pairs only partners that `Start.accept` lets in (and whose own accept
    #: lets this user in). False: a Start with an accept list is refused by the core with a notice.
    honours_accept: ClassVar[bool] = False

    #: Whether `resume` works only where the room outlived the process (Platform.rooms_persist):
    #: the hub's chats are resumed in Discord threads and Matrix rooms, not for web clients.
    needs_persistent_rooms: ClassVar[bool] = False

    def __init__(self, name: str, config: Any, state: KeyValue | None = None) -> None:
        self.name = name
        self.config = config
        self.state = state  # this backend's persisted key/value space (None in bare unit tests)

    async def start(self) -> None:
        """Open shared resources (HTTP sessions, listeners). Default: nothing."""

    async def stop(self) -> None:
        """Close shared resources. Default: nothing."""

    async def __aenter__(self) -> Backend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    async def connect(self, start: Start) -> Chat:
        """Look for a stranger. Returns at once with a Chat whose events start with Waiting.

        Called by a session task. May raise: the session ends the search with one notice.
        """

    async def resume(self, handle: str) -> Chat | None:
        """Take up a chat persisted before a restart. Default: None (cannot; the session ends)."""
        return None

    def scale_out(self, store: Any) -> None:
        """Called before `start` when the daemon's store is shared by several instances (Redis):
        the hub pairs and relays through it. Default: nothing (strangers of this backend are not
        shared between instances, and each chat lives on the instance that made it)."""

    async def resumed(self) -> None:
        """Called once after the router resumed what it could of the previous run. Default: nothing."""

    async def abandon(self, handle: str) -> None:
        """Tell the stranger of a persisted chat that will not be resumed that it ended.

        Called at start for each chat `resume` declined. Default: nothing.
        """

    async def online(self) -> int | None:
        """How many people the backend says are online, for status pages. Default: unknown."""
        return None

    def stats(self) -> dict[str, Any]:
        """Figures for `stranger-bridge status` and /metrics; cheap, synchronous. Default: none.

        Keys the core reads: "waiting" ({mode: users waiting for a stranger}, mode as in
        events.Mode values) and "connected" (bool: the link to the backend's server is up; shown as
        stranger_bridge_backend_up). Other keys are shown by `status` as they are.
        """
        return {}

