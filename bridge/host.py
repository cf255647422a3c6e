"""The Host protocol: what a Session needs from whoever runs it (the Router, or a test's stand-in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from .abc import Backend
from .config import BridgeSection
from .events import Event, Room
from .metrics import Metrics
from .policy.moderator import Moderator
from .reports import RecentChats
from .store import SessionRecord

if TYPE_CHECKING:
    from .rich import ChatRich as RichState
    from .session import Session

__all__ = ["Host"]


class Host(Protocol):
    """The members of the router a session uses; the session imports nothing else of it."""

    settings: BridgeSection
    metrics: Metrics
    backends: Mapping[str, Backend]
    recent: RecentChats  # chats that just ended, so that "report" still reaches them
    moderator: Moderator  # bans, start throttling, content policy, reports

    @property
    def closing(self) -> bool:
        """True once the daemon is shutting down: no new chats start."""
        ...

    def backend_for(self, platform: str) -> str:
        """The backend a room of `platform` uses when its Start names none."""
        ...

    def max_message_length(self, backend: str | None) -> int:
        """The longest user message the backend named `backend` takes."""
        ...

    async def deliver(self, room: Room, event: Event) -> bool:
        """Show `event` in `room` (bounded retries); False when it could not be shown."""
        ...

    def spawn_notice(self, room: Room, text: str) -> None:
        """Show a notice in `room` outside the session's task (its inbox may be full)."""
        ...

    async def save(self, record: SessionRecord) -> None:
        """Persist a session record; failures are logged, never raised."""
        ...

    def queue_save(self, session: Session, state: RichState, due: float | None = None) -> None:
        """Give `session` its turn to save its chat's reference map `state` soon (`Session.put_save`),
        after the work ready now, or at `due` (time.monotonic's clock); one session's turn per loop
        iteration. A host that finds the chat cannot be resumed after a restart sets `state.persist`
        False instead (never saved then)."""
        ...

    async def forget(self, room: Room) -> None:
        """Drop the persisted record of `room`; failures are logged, never raised."""
        ...

    def retire(self, session: Session) -> bool:
        """Called by an idle session's task before it exits; False if it must keep running."""
        ...
