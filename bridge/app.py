"""The daemon: builds the store, backends, router and platforms from a Config, runs them, reports on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from typing import Any

from .abc import Backend, CredentialsError, Platform
from .config import Config
from .health import HealthServer
from .logsetup import ErrorRing
from .metrics import Metrics
from .notify import Notifier
from .policy.moderator import Moderator
from .router import Router
from .store import Store, open_store
from .store.figures import add_figures
from .storetiming import TimedStore

__all__ = ["Bridge", "LAST_RUN", "PlatformCredentialsError", "PlatformStartError", "StartError"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds a platform may take to connect before sessions are resumed anyway
LAST_RUN = ("core", "last_run")  # store namespace and key of the last run's start, stop and errors


class StartError(RuntimeError):
    """The daemon cannot start (its health listener's address is taken, a platform failed, ...)."""


class PlatformStartError(StartError):
    """A platform stopped before it became ready (a port in use, a bad token, ...)."""


class PlatformCredentialsError(PlatformStartError):
    """A platform stopped before it became ready because its credentials were refused for good."""


class Bridge:
    """One running stranger-bridge. Use `async with Bridge(config) as bridge:` or `await bridge.run()`."""

    def __init__(self, config: Config, *, store: Store | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = Metrics()
        self.backends: dict[str, Backend] = {}
        self.platforms: dict[str, Platform] = {}
        self.router: Router | None = None
        self.moderator: Moderator | None = None
        self.health: HealthServer | None = None
        # The CLI hands in Notifier.from_env(); a Bridge built in-process (tests, embedding) says nothing to systemd.
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.errors = ErrorRing()
        self.phase = "starting"  # "starting" → "running" → "stopping"
        self.started_at = time.time()
        self._tasks: list[asyncio.Task] = []
        self._helpers: list[asyncio.Task] = []  # readiness watch and the systemd keep-alive
        self._started = False
        self._ready_done = False  # after start-up a failing platform is logged, not fatal

    async def start(self) -> None:
        """Open the store, start backends and platforms, wait until platforms are ready, resume."""
        cfg = self.config
        if self.store is None:
            b = cfg.bridge  # raises StoreError naming the key (bridge.store, bridge.instance): nothing overwritten
            self.store = await open_store(b.store_url, prefix=b.store_prefix, instance=b.instance, lease=b.instance_lease)
        self._started = True  # from here on, stop() has something to undo
        logging.getLogger().addHandler(self.errors)
        loop = asyncio.get_running_loop()
        store = TimedStore(self.store, self.metrics)
        await self._save_last_run(stopped=None)
        if cfg.bridge.metrics_bind is not None:
            self.health = HealthServer(cfg.bridge.metrics_bind, self.metrics, self.status)
            try:
                await self.health.start()
            except OSError as exc:
                raise StartError(f"health listener on {cfg.bridge.metrics_bind} failed to start: {exc}") from exc
        for name, cls in cfg.backend_classes.items():
            backend = cls(name, cfg.backends[name], store.state_for(f"backend:{name}"))
            if self.store.shared:  # the hub: one pool and one relay for every instance
                backend.scale_out(self.store)
            await backend.start()
            self.backends[name] = backend
        # One Moderator for the whole daemon: admin surfaces of platforms act on the same bans,
        # strikes and guild policy layers as the sessions.
        self.moderator = Moderator(cfg.policy, store)
        self.moderator.compile(list(cfg.platforms))
        self.router = Router(
            cfg.bridge,
            self.backends,
            store,
            default_backends={name: cfg.backend_for(name) for name in cfg.platforms},
            metrics=self.metrics,
            moderator=self.moderator,
        )
        self._register_gauges()
        if self.store.shared:  # the web page's count and `status` add up every instance's figures
            self.store.share_figures(self._figures)
            self.metrics.others_online = lambda: add_figures(list((self.store.cluster() or {}).values()))["online"]
        self._helpers.append(loop.create_task(self.notifier.keep_alive(self.summary), name="sd_notify keep-alive"))
        # Each platform learns the sessions a previous run left before it runs: the first events it
        # reads (a message written while the daemon was down) must find their rooms in a chat, not
        # idle (a DM would then auto-start and end the resumed chat).
        records = await store.sessions()
        for name, cls in cfg.platform_classes.items():
            state = store.state_for(f"platform:{name}")
            platform = cls(name, cfg.platforms[name], self.router.submitter(name), state, self.metrics)
            platform.moderator = self.moderator
            platform.image_limits = cfg.bridge.images
            if self.store.shared:  # the web tier: any instance serves any client
                platform.scale_out(self.store)
            self.router.attach(platform)
            self.platforms[name] = platform
            platform.rooms_active([r.room for r in records if r.room.platform == name])
            self.metrics.set_ready(name, False)
            self._tasks.append(loop.create_task(self._run_platform(platform), name=f"platform {name}"))
        late = [await self._wait_ready(platform, runner) for platform, runner in zip(self.platforms.values(), self._tasks)]
        self._ready_done = True
        await self.router.resume()
        self.phase = "running"
        pending = [task for task in late if task is not None]
        self._helpers.append(loop.create_task(self._announce_ready(pending), name="readiness"))
        log.info(
            "stranger-bridge running: platforms %s, backends %s",
            ", ".join(self.platforms) or "none",
            ", ".join(self.backends),
        )

    async def _wait_ready(self, platform: Platform, runner: asyncio.Task) -> asyncio.Task | None:
        """Wait for one platform; returns its still-running ready() task if it was not ready in time."""
        ready = asyncio.get_running_loop().create_task(platform.ready())
        done, _ = await asyncio.wait({ready, runner}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:  # run() ended before the platform was ready: it cannot work
            ready.cancel()
            error = runner.exception() if not runner.cancelled() else None
            if isinstance(error, CredentialsError):
                raise PlatformCredentialsError(f"platform {platform.name} failed to start: {error}") from error
            raise PlatformStartError(f"platform {platform.name} failed to start: {error!r}")
        if ready not in done:
            log.warning("platform %s not ready after %.0f s; resuming sessions anyway", platform.name, READY_TIMEOUT)
            ready.add_done_callback(lambda task: self._late_ready(platform.name, task))
            return ready
        if ready.exception() is not None:
            raise PlatformStartError(f"platform {platform.name} failed to start: {ready.exception()!r}")
        self.metrics.set_ready(platform.name, True)
        return None

    def _late_ready(self, name: str, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is None:
            log.info("platform %s is ready", name)
            self.metrics.set_ready(name, True)

    async def _announce_ready(self, pending: list[asyncio.Task]) -> None:
        """READY=1 to systemd once every platform is ready (at once when all were in time)."""
        if pending:
            await asyncio.wait(pending)
        if all(self.metrics.ready.get(name) for name in self.platforms):
            self.notifier.ready(self.summary())

    async def _run_platform(self, platform: Platform) -> None:
        try:
            await platform.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, CredentialsError):  # its message says it all: no traceback
                log.error("platform %s stopped: %s", platform.name, exc)
            else:
                log.exception("platform %s stopped with an error", platform.name)
            self.metrics.inc("errors", kind="platform")
            self.metrics.set_ready(platform.name, False)
            if self._ready_done:
                return
            raise
        self.metrics.set_ready(platform.name, False)

    def _register_gauges(self) -> None:
        router = self.router
        assert router is not None
        def inbox_depth() -> dict[tuple[str, ...], float]:
            return {("core", "session_inbox"): sum(len(session.inbox) for session in router.sessions.values())}

        self.metrics.gauge_source("queue_depth", ("owner", "queue"), inbox_depth)

        def backends_up() -> dict[tuple[str, ...], float]:
            out: dict[tuple[str, ...], float] = {}
            for name, stats in self._backend_stats().items():
                if isinstance(stats.get("connected"), bool):
                    out[(name,)] = 1.0 if stats["connected"] else 0.0
            return out

        self.metrics.gauge_source("backend_up", ("backend",), backends_up)

    # ---- the operator's view -----------------------------------------------------------------

    def _backend_stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, backend in self.backends.items():
            try:
                out[name] = dict(backend.stats())
            except Exception:  # a status page must not fail because one backend's figures did
                log.exception("backend %s: stats() failed", name)
                out[name] = {}
        return out

    def health_state(self) -> str:
        """"healthy", "degraded" (a platform not ready, a backend down), "starting" or "stopping"."""
        if self.phase != "running":
            return self.phase
        if not all(self.metrics.ready.get(name) for name in self.platforms):
            return "degraded"
        if any(stats.get("connected") is False for stats in self._backend_stats().values()):
            return "degraded"
        if self.store is not None and self.store.problem() is not None:
            return "degraded"
        return "healthy"

    def problems(self) -> list[str]:
        """Why the daemon is not healthy, one line each (no ids, no secrets): /healthz shows them."""
        out = [f"platform {name}: not ready" for name in self.platforms if not self.metrics.ready.get(name)]
        out += [f"backend {name}: not connected" for name, stats in self._backend_stats().items() if stats.get("connected") is False]
        problem = self.store.problem() if self.store is not None else None
        return out + ([problem] if problem is not None else [])

    def status(self) -> dict[str, Any]:
        """What `stranger-bridge status` shows, JSON-ready: no room ids, user keys or message text."""
        sessions: dict[str, dict[str, int]] = {}
        for (platform, state), n in self.metrics.sessions().items():
            sessions.setdefault(platform, {})[state] = n
        backends = self._backend_stats()
        waiting = self._waiting(backends)
        report = {
            "running": True,
            "health": self.health_state(),
            "pid": os.getpid(),
            "started": self.started_at,
            "uptime": round(time.time() - self.started_at, 3),
            "platforms": {name: {"ready": bool(self.metrics.ready.get(name))} for name in self.platforms},
            "backends": backends,
            "sessions": sessions,
            "waiting": dict(waiting),
            "errors": self.errors.recent(),
            "problems": self.problems() if self.phase == "running" else [],
            "instance": self.config.bridge.instance,
        }
        others = self.store.cluster() if self.store is not None else None
        if others is not None:  # several instances share the store: the figures of each, and their sum
            each = {**others, self.config.bridge.instance: self._figures(backends)}
            report["all_instances"] = {"instances": dict(sorted(each.items())), **add_figures(list(each.values()))}
        return report

    def _waiting(self, backends: dict[str, dict[str, Any]]) -> dict[str, int]:
        waiting: Counter[str] = Counter()
        for stats in backends.values():
            for mode, n in (stats.get("waiting") or {}).items():
                waiting[str(mode)] += int(n)
        return dict(waiting)

    def _figures(self, backends: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """This instance's live figures as the others see them (counts only)."""
        return {"online": self.metrics.local_online(), "waiting": self._waiting(self._backend_stats() if backends is None else backends)}

    def summary(self) -> str:
        """One line for systemd's STATUS=: live session counts and what is not ready."""
        states: Counter[str] = Counter()
        for (_, state), n in self.metrics.sessions().items():
            states[state] += n
        text = f"{states['chatting']} chatting, {states['searching']} searching"
        down = [name for name in self.platforms if not self.metrics.ready.get(name)]
        if down:
            text += f"; not ready: {', '.join(down)}"
        return text + ("; stopping" if self.phase == "stopping" else "")

    async def _save_last_run(self, stopped: float | None) -> None:
        assert self.store is not None
        data = {"started": self.started_at, "stopped": stopped, "pid": os.getpid(), "errors": self.errors.recent()}
        try:
            await self.store.set(*LAST_RUN, json.dumps(data))
        except Exception:
            log.exception("could not record this run in the state file")

    # ---- stopping ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """End every chat with a notice on each side, stop platforms and backends, close the store."""
        if not self._started:
            return
        self._started = False
        self.phase = "stopping"
        self.notifier.stopping(self.summary())
        if self.router is not None:
            try:  # bounded: a session stuck on a backend or store call must not keep the daemon up
                async with asyncio.timeout(4 * self.config.bridge.shutdown_timeout):
                    await self.router.shutdown()
            except TimeoutError:
                log.error("ending the chats did not finish within %.0f s; stopping anyway", 4 * self.config.bridge.shutdown_timeout)
            # Let platforms push out the shutdown notices they queued before they are cancelled.
            for platform in self.platforms.values():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.config.bridge.shutdown_timeout):
                        await platform.flush()
        await _cancel_all([*self._tasks, *self._helpers], self.config.bridge.shutdown_timeout)
        self._tasks.clear()
        self._helpers.clear()
        for backend in self.backends.values():
            try:
                await backend.stop()
            except Exception:
                log.exception("backend %s failed to stop", backend.name)
        if self.health is not None:
            await self.health.stop()
        if self.store is not None:
            await self._save_last_run(stopped=time.time())
            await self.store.close()
        logging.getLogger().removeHandler(self.errors)
        self.notifier.close()
        log.info("stranger-bridge stopped")

    async def __aenter__(self) -> Bridge:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever), then shut down cleanly."""
        async with self:
            await (stop.wait() if stop is not None else asyncio.Event().wait())


async def _cancel_all(tasks: list[asyncio.Task], timeout: float) -> None:
    """Cancel `tasks` and wait for them; one still running after `timeout` (its clean-up awaits
    something that does not answer) is named in the log and cancelled again, at its next await."""
    for task in tasks:
        task.cancel()
    for _ in range(3):
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in done:  # what they raised while stopping was logged by them, or does not matter now
            if not task.cancelled():
                task.exception()
        tasks = list(pending)
        for task in tasks:
            log.warning("%s did not stop within %.0f s of being cancelled; cancelling it again", task.get_name(), timeout)
            task.cancel()
