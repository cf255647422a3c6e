"""The daemon: builds the store, backends, router and platforms from a Config and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .abc import Backend, CredentialsError, Platform
from .config import Config
from .metrics import Metrics
from .router import Router
from .store import SQLiteStore, Store

__all__ = ["Bridge", "PlatformCredentialsError", "PlatformStartError"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds a platform may take to connect before sessions are resumed anyway


class PlatformStartError(RuntimeError):
    """A platform stopped before it became ready (a port in use, a bad token, ...)."""


class PlatformCredentialsError(PlatformStartError):
    """A platform stopped before it became ready because its credentials were refused for good."""


class Bridge:
    """One running stranger-bridge. Use `async with Bridge(config) as bridge:` or `await bridge.run()`."""

    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        self.store = store
        self.metrics = Metrics()
        self.backends: dict[str, Backend] = {}
        self.platforms: dict[str, Platform] = {}
        self.router: Router | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = False
        self._ready_done = False  # after start-up a failing platform is logged, not fatal

    async def start(self) -> None:
        """Open the store, start backends and platforms, wait until platforms are ready, resume."""
        cfg = self.config
        if self.store is None:
            self.store = SQLiteStore(cfg.bridge.state)  # raises StoreError: nothing overwritten
        self._started = True  # from here on, stop() has something to undo
        for name, cls in cfg.backend_classes.items():
            backend = cls(name, cfg.backends[name], self.store.state_for(f"backend:{name}"))
            await backend.start()
            self.backends[name] = backend
        self.router = Router(
            cfg.bridge,
            self.backends,
            self.store,
            default_backends={name: cfg.backend_for(name) for name in cfg.platforms},
            metrics=self.metrics,
        )
        for name, cls in cfg.platform_classes.items():
            platform = cls(
                name, cfg.platforms[name], self.router.submitter(name), self.store.state_for(f"platform:{name}"), self.metrics
            )
            self.router.attach(platform)
            self.platforms[name] = platform
            self._tasks.append(asyncio.get_running_loop().create_task(self._run_platform(platform), name=f"platform {name}"))
        for platform, runner in zip(self.platforms.values(), self._tasks):
            await self._wait_ready(platform, runner)
        self._ready_done = True
        records = await self.store.sessions()
        for platform in self.platforms.values():
            platform.rooms_active([r.room for r in records if r.room.platform == platform.name])
        await self.router.resume()
        log.info(
            "stranger-bridge running: platforms %s, backends %s",
            ", ".join(self.platforms) or "none",
            ", ".join(self.backends),
        )

    async def _wait_ready(self, platform: Platform, runner: asyncio.Task) -> None:
        ready = asyncio.get_running_loop().create_task(platform.ready())
        done, _ = await asyncio.wait({ready, runner}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if runner in done:  # run() ended before the platform was ready: it cannot work
            ready.cancel()
            error = runner.exception() if not runner.cancelled() else None
            if isinstance(error, CredentialsError):
                raise PlatformCredentialsError(f"platform {platform.name} failed to start: {error}") from error
            raise PlatformStartError(f"platform {platform.name} failed to start: {error!r}")
        if ready not in done:
            ready.cancel()
            log.warning("platform %s not ready after %.0f s; resuming sessions anyway", platform.name, READY_TIMEOUT)
        elif ready.exception() is not None:
            raise PlatformStartError(f"platform {platform.name} failed to start: {ready.exception()!r}")

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
            if self._ready_done:
                return
            raise

    async def stop(self) -> None:
        """End every chat with a notice on each side, stop platforms and backends, close the store."""
        if not self._started:
            return
        self._started = False
        if self.router is not None:
            await self.router.shutdown()
            # Let platforms push out the shutdown notices they queued before they are cancelled.
            for platform in self.platforms.values():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.config.bridge.shutdown_timeout):
                        await platform.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for backend in self.backends.values():
            try:
                await backend.stop()
            except Exception:
                log.exception("backend %s failed to stop", backend.name)
        if self.store is not None:
            await self.store.close()
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

