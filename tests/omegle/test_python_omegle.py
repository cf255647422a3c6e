"""Our client against a client nobody here wrote: python-omegle 1.1.6 is the stranger, through
the tests' server and through another bridge's web platform."""

from __future__ import annotations

import asyncio

from python_omegle import ChatEvent, RandomChat

from bridge.events import Connected, Disconnected, Message, Reason, Start, Typing
from tests.helpers import running

from .conftest import omegle
from .server import OmegleTestServer
from .test_federation import bridge_a


async def next_event(chat: RandomChat, kind: ChatEvent, timeout: float = 10.0):
    """The argument of python-omegle's next `kind` event (its get_event blocks: run it in a thread)."""
    async with asyncio.timeout(timeout):
        while True:
            event, argument = await asyncio.to_thread(chat.get_event)
            if event is kind:
                return argument


async def chat_with_python_omegle(url: str, b) -> None:
    rec = b.platforms["rec"]
    rec.send("bob", Start())
    stranger = RandomChat("en")
    stranger._server_url = url
    await asyncio.to_thread(stranger.start)
    await next_event(stranger, ChatEvent.CHAT_READY)
    await rec.wait_for("bob", Connected)
    await asyncio.to_thread(stranger.start_typing)
    await rec.wait_for("bob", Typing)
    await asyncio.to_thread(stranger.send, "hello from python-omegle")
    assert (await rec.wait_for("bob", Message)).text == "hello from python-omegle"
    rec.send("bob", Typing())
    await next_event(stranger, ChatEvent.PARTNER_STARTED_TYPING)
    rec.send("bob", Message("hello from the bridge"))
    assert await next_event(stranger, ChatEvent.GOT_MESSAGE) == "hello from the bridge"
    await asyncio.to_thread(stranger.disconnect)
    assert (await rec.wait_for("bob", Disconnected)).reason == Reason.STRANGER


async def test_python_omegle_through_the_test_server():
    async with OmegleTestServer(poll_window=0.3) as server:
        async with running(omegle(server.url)) as b:
            await chat_with_python_omegle(server.url, b)


async def test_python_omegle_through_another_bridges_web_platform():
    async with running(bridge_a()) as a:
        url = a.platforms["web"].url
        async with running(omegle(url)) as b:
            await chat_with_python_omegle(url, b)
