"""A scripted backend for session tests: each chat's stranger side is driven by the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bridge.abc import Backend, Chat, PluginConfig
from bridge.events import Event, Start, Waiting


class ScriptedConfig(PluginConfig):
    fail_connect: bool = False
    max_length: int = 100


class ScriptedChat(Chat):
    def __init__(self, start: Start) -> None:
        self.start = start
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sent: list[Event] = []
        self.closed = 0
        self.queue.put_nowait(Waiting())

    async def events(self) -> AsyncIterator[Event]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stranger(self, *events: Event | BaseException | None) -> None:
        for event in events:
            self.queue.put_nowait(event)

    async def send(self, event: Event) -> None:
        if self.closed:
            raise ConnectionError("send after close")
        self.sent.append(event)

    async def aclose(self) -> None:
        self.closed += 1


class ScriptedBackend(Backend):
    Config = ScriptedConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.chats: list[ScriptedChat] = []
        self.max_message_length = self.config.max_length
        self.arrived = asyncio.Event()

    async def connect(self, start: Start) -> Chat:
        if self.config.fail_connect:
            raise ConnectionRefusedError("scripted refusal")
        chat = ScriptedChat(start)
        self.chats.append(chat)
        self.arrived.set()
        return chat

    async def next_chat(self, index: int, timeout: float = 5) -> ScriptedChat:
        async with asyncio.timeout(timeout):
            while len(self.chats) <= index:
                self.arrived.clear()
                await self.arrived.wait()
        return self.chats[index]


SCRIPTED = "tests.core.scripted:ScriptedBackend"
