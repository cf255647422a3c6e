"""The router: one Session per room, user events in through `submit`, room output through `deliver`."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, deque

from .abc import Backend, Platform, Submit
from .backoff import Backoff
from .config import BridgeSection
from .events import ALLOWED, Disconnected, Event, Origin, Reason, Room, ServerNotice
from .metrics import Metrics
from .policy.config import PolicySection
from .policy.moderator import Moderator
from .reports import RecentChats
from .rich import ChatRich
from .session import Session, State
from .store import SessionRecord, Store

__all__ = ["Router"]

log = logging.getLogger(__name__)

DELIVER_BACKOFF = Backoff(0.2, cap=4.0, jitter=0.2)  # attempts come from [bridge] deliver_attempts
# A due reference-map save waits this long for its turn, so the relay of the message that made it
# due (a few loop iterations through the partner's session and platform) is done first.
SAVE_DELAY = 0.005
_FROM_USER = ALLOWED[Origin.USER]


class Router:
    """Maps rooms to sessions and sessions to platforms. Plugins never see it: they get callables."""

    def __init__(
        self,
        settings: BridgeSection,
        backends: dict[str, Backend],
        store: Store,
        *,
        default_backends: dict[str, str] | None = None,
        metrics: Metrics | None = None,
        moderator: Moderator | None = None,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.store = store
        self.platforms: dict[str, Platform] = {}
        self.sessions: dict[Room, Session] = {}
        self.recent = RecentChats(settings.report_window, settings.report_records)  # for "report" after the end
        self.metrics = metrics or Metrics()
        self.moderator = moderator or Moderator(PolicySection(), store)
        self.moderator.scope_of = self._scope_of  # each room's platform knows its guild or room
        self._counts: dict[tuple[str, str], int] | None = None  # this turn's session counts (see _session_counts)
        self.metrics.sessions_source(self._session_counts)
        self.closing = False
        self._default_backends = default_backends or {}
        self._background: set[asyncio.Task] = set()
        # Until resume() has looked at the previous run's sessions, rooms queue their events but
        # no session task runs: otherwise this run's new sessions could be taken for leftovers.
        self._live = False
        self._waiting: list[Session] = []
        self._saves: deque[tuple[Session, ChatRich, float]] = deque()  # maps waiting to save, and when they may
        # Maps whose save is due later (`queue_save`'s `due`), soonest first, behind one timer of the
        # loop's (a timer per chat made each chat's first message dearer, and every loop timer too).
        self._later: list[tuple[float, int, Session, ChatRich]] = []
        self._later_order = itertools.count()  # ties on the due time go in order, never to a Session comparison
        self._later_timer: asyncio.TimerHandle | None = None

    # ---- wiring ------------------------------------------------------------------------------

    def attach(self, platform: Platform) -> None:
        """Register a platform so rooms of its name can be delivered to."""
        self.platforms[platform.name] = platform
        if not platform.reports_after_end:
            self.recent.without.add(platform.name)

    def submitter(self, platform: str) -> Submit:
        """The `submit` callable handed to the platform named `platform`: it can only speak for its own rooms."""

        def submit(room: Room, event: Event) -> bool:
            if room.platform != platform:
                log.error("platform %s submitted for a room of %s; refused", platform, room.platform)
                return False
            return self.submit(room, event)

        return submit

    def backend_for(self, platform: str) -> str:
        return self._default_backends.get(platform, self.settings.default_backend)

    def _scope_of(self, room: Room) -> str | None:
        platform = self.platforms.get(room.platform)
        return platform.scope_of(room) if platform is not None else None

    def max_message_length(self, backend: str | None) -> int:
        limit = self.settings.max_message_length
        found = self.backends.get(backend or "")
        return min(limit, found.max_message_length) if found else limit

    # ---- input -------------------------------------------------------------------------------

    def submit(self, room: Room, event: Event) -> bool:
        """Hand a user-side event to the room's session. Never blocks; False when refused."""
        if not isinstance(event, _FROM_USER):  # Envelope's check, without making one: every event passes here
            log.warning("room %s: %s cannot come from the user side; refused", room, type(event).__name__)
            return False
        if self.closing:
            return False
        session = self.sessions.get(room)
        if session is None:
            session = self._open(room)
        return session.put_user(event)

    def _open(self, room: Room) -> Session:
        session = Session(room, self)
        self.sessions[room] = session
        if self._live:
            self._run(session)
        else:
            self._waiting.append(session)
        return session

    def _run(self, session: Session) -> None:
        session.task = asyncio.get_running_loop().create_task(session.run(), name=f"session {session.room}")

    def retire(self, session: Session) -> bool:
        """Called by an idle session's task before it exits; False if it must keep running."""
        if self.sessions.get(session.room) is session and session.inbox.empty() and not self.closing:
            del self.sessions[session.room]
            return True
        return False

    # ---- output ------------------------------------------------------------------------------

    async def deliver(self, room: Room, event: Event) -> bool:
        """Show an event in a room, retrying a failing platform a bounded number of times.

        False when it could not be shown; the session then tells both sides about a lost message.
        Counted as deliver_retries / deliver_failures by platform and reason.
        """
        platform = self.platforms.get(room.platform)
        if platform is None:
            log.warning("room %s: no platform %s; %s dropped", room, room.platform, type(event).__name__)
            self.metrics.inc("deliver_failures", platform=room.platform, reason="no_platform")
            return False
        attempts = self.settings.deliver_attempts
        for attempt in range(attempts):
            try:
                await platform.deliver(room, event)
                self.metrics.delivery(room.platform, "ok")
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.inc("errors", kind="deliver")
                last = attempt + 1 == attempts
                self.metrics.delivery(room.platform, "failed" if last else "retry", type(exc).__name__)
                if last:
                    log.error("room %s: %s not delivered after %d attempts: %r", room, type(event).__name__, attempts, exc)
                    return False
                log.warning("room %s: delivering %s failed (%r); retrying", room, type(event).__name__, exc)
                await asyncio.sleep(DELIVER_BACKOFF.delay(attempt + 1))
        return False

    def spawn_notice(self, room: Room, text: str) -> None:
        """Deliver a notice outside the room's task (used when its inbox is full)."""
        self._spawn(self.deliver(room, ServerNotice(text)))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- persistence -------------------------------------------------------------------------

    async def save(self, record: SessionRecord) -> None:
        try:
            await self.store.save_session(record)
        except Exception:
            log.exception("room %s: could not persist the session", record.room)

    def queue_save(self, session: Session, state: ChatRich, due: float | None = None) -> None:
        """Give `session` its turn to save its chat's reference map soon: no sooner than SAVE_DELAY
        from now (or from `due`, on the loop's clock), and one per loop iteration, each after the
        work that was ready when the turn before ran (bridge.rich.changed says why); never for a
        chat that could not be resumed after a restart."""
        if not self._persists(session, state):
            return
        if due is not None:
            self._save_at(session, state, due)
            return
        loop = asyncio.get_running_loop()
        self._saves.append((session, state, loop.time() + SAVE_DELAY))
        if len(self._saves) == 1:
            loop.call_later(SAVE_DELAY, self._next_save)

    def _save_at(self, session: Session, state: ChatRich, due: float) -> None:
        heapq.heappush(self._later, (due, next(self._later_order), session, state))
        timer = self._later_timer
        if timer is None or due < timer.when():
            if timer is not None:
                timer.cancel()
            self._later_timer = asyncio.get_running_loop().call_at(due, self._later_due)

    def _later_due(self) -> None:
        loop = asyncio.get_running_loop()
        self._later_timer = None
        later, now = self._later, loop.time()
        while later and later[0][0] <= now:
            _, _, session, state = heapq.heappop(later)
            if session.rich is state:  # else the chat ended meanwhile: nothing to save
                self.queue_save(session, state)
        if later:
            self._later_timer = loop.call_at(later[0][0], self._later_due)

    def _persists(self, session: Session, state: ChatRich) -> bool:
        if self._resumable(session.room, session.backend_name):
            return True
        # A hub chat in a room that does not outlive the process (a web client's) is never
        # resumed, so its map is never read back: it is not saved, now or later in this chat.
        state.persist = state.save_queued = False
        return False

    def _next_save(self) -> None:
        loop = asyncio.get_running_loop()
        session, state, due = self._saves[0]
        wait = due - loop.time()
        if wait > 0:  # queued behind others: its own message's relay may still be going through
            loop.call_later(wait, self._next_save)
            return
        self._saves.popleft()
        try:
            if session.rich is state:  # else the chat ended meanwhile: nothing to save
                session.put_save(state)
        finally:
            if self._saves:
                loop.call_soon(self._next_save)

    def _resumable(self, room: Room, backend: str | None) -> bool:
        """Whether a chat of `room` on `backend` can be taken up after a restart (given its handle):
        not on a backend that resumes only where the room outlived the process, in a room that does not."""
        found = self.backends.get(backend or "")
        if found is None or not found.needs_persistent_rooms:
            return True
        platform = self.platforms.get(room.platform)
        return platform is not None and platform.rooms_persist

    async def forget(self, room: Room) -> None:
        try:
            await self.store.delete_session(room)
        except Exception:
            log.exception("room %s: could not forget the session", room)

    async def resume(self) -> tuple[int, int]:
        """Take up the sessions a previous run left: resumed where the backend can, else ended with
        exactly one notice to the room (and a disconnect to the stranger). Returns (resumed, ended).

        Called once by the daemon after the platforms are ready; session tasks start after it.
        """
        try:
            return await self._resume()
        finally:
            self._live = True
            waiting, self._waiting = self._waiting, []
            for session in waiting:
                if session.task is None:
                    self._run(session)

    async def _resume(self) -> tuple[int, int]:
        resumed = ended = 0
        for record in await self.store.sessions():
            backend = self.backends.get(record.backend)
            chat = None
            # A backend whose chats live only between this bridge's rooms (the hub) takes up only
            # those whose room outlived the process: a web client's did not.
            if backend is not None and record.handle and self._resumable(record.room, record.backend):
                try:
                    chat = await backend.resume(record.handle)
                except Exception as exc:
                    log.warning("room %s: resuming on %s failed: %r", record.room, record.backend, exc)
            if chat is not None and record.room.platform in self.platforms:
                session = self.sessions.get(record.room) or self._open(record.room)
                session.resume(chat, record, backend)
                resumed += 1
                continue
            if backend is not None and record.handle:
                try:
                    await backend.abandon(record.handle)
                except Exception as exc:
                    log.info("room %s: could not tell the stranger: %r", record.room, exc)
            await self.forget(record.room)
            if record.room.platform in self.platforms:
                await self.deliver(record.room, Disconnected(reason=Reason.RESTART))
            ended += 1
        for backend in self.backends.values():  # the hub: members nobody took up have left
            try:
                await backend.resumed()
            except Exception:
                log.exception("backend %s: finishing the resume failed", backend.name)
        if resumed or ended:
            log.info("previous sessions: %d resumed, %d ended", resumed, ended)
        return resumed, ended

    # ---- lifecycle ---------------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> None:
        """Refuse new events, end every chat with one notice per side, wait for the session tasks."""
        self.closing = True
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        tasks = []
        for session in list(self.sessions.values()):
            # A room that outlives the process (a Discord thread, a Matrix room) may keep its chat for the next run.
            platform = self.platforms.get(session.room.platform)
            session.put_shutdown(keep=platform is not None and platform.rooms_persist)
            if session.task is not None:
                tasks.append(session.task)
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d sessions did not end within %.1f s", len(pending), timeout)
                await asyncio.wait(pending, timeout=1)
        if self._background:
            await asyncio.wait(list(self._background), timeout=1)
        self.sessions.clear()

    def _session_counts(self) -> dict[tuple[str, str], int]:
        """{(platform, state): sessions}, counted once per turn of the event loop: every /start answer
        shows the online count, and counting tens of thousands of sessions for each of a burst of
        starts made the burst quadratic (2,000 starts spent most of their time here)."""
        if self._counts is not None:
            return self._counts
        counts: Counter[tuple[str, str]] = Counter()
        for room, session in self.sessions.items():
            counts[(room.platform, session.state.value)] += 1
        result = dict(counts)
        try:
            asyncio.get_running_loop().call_soon(self._forget_counts)  # good until the loop's next turn
        except RuntimeError:  # no loop (a scrape from a thread, a unit test): counted each time
            return result
        self._counts = result
        return result

    def _forget_counts(self) -> None:
        self._counts = None

    def state_of(self, room: Room) -> State:
        """The session state of a room (IDLE when it has none)."""
        session = self.sessions.get(room)
        return session.state if session else State.IDLE

