"""A TCP proxy in front of a real redis-server that can lose one reply: the request reaches Redis and takes
effect, its answer never comes back, and every connection drops (Redis "died" right after writing)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.ports import free_port

__all__ = ["ReplyLosingProxy"]


class ReplyLosingProxy:
    """Forwards 127.0.0.1:`port` to the Redis at `upstream`. After `arm(marker)`, the first request that
    carries `marker` is forwarded, its reply is read and thrown away, and then every connection is cut
    and new ones are closed at once (`cut` is set) until `heal()`."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"  # database 0, as RedisServer.url
        self.cut = asyncio.Event()
        self._marker: bytes | None = None
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> ReplyLosingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    def arm(self, marker: bytes) -> None:
        self._marker = marker

    def heal(self) -> None:
        self._refusing = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        losing = asyncio.Event()  # set: the next reply from Redis is thrown away, then all is cut
        tasks = [
            asyncio.create_task(self._requests(reader, up_writer, losing)),
            asyncio.create_task(self._replies(up_reader, writer, losing)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter, losing: asyncio.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                if self._marker is not None and self._marker in chunk:
                    self._marker = None
                    losing.set()
                up.write(chunk)
                await up.drain()

    async def _replies(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, losing: asyncio.Event) -> None:
        with contextlib.suppress(OSError):
            while chunk := await up.read(65536):
                if losing.is_set():  # the marked request was written; its answer is lost with the connection
                    self._refusing = True
                    self._drop_all()
                    self.cut.set()
                    return
                writer.write(chunk)
                await writer.drain()
