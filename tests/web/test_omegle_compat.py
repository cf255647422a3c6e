"""The PyPI client python-omegle 1.1.6, unmodified, against the server over real sockets."""

from __future__ import annotations

import asyncio

from python_omegle import InterestsChat, RandomChat, SpyeeChat
from python_omegle.chatevent import ChatEvent

from .client import RawClient

# python-omegle is synchronous `requests` code with no timeouts: each call runs in a thread and
# the test bounds how long it waits. A stuck get_event() ends when the fixture stops the server.
STEP = 10.0


async def call(fn, *args):
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), STEP)


async def next_event(chat, *wanted: ChatEvent):
    """The next event of one of the `wanted` kinds, skipping waiting and notices."""
    while True:
        kind, arg = await call(chat.get_event)
        if kind in wanted:
            return kind, arg
        assert kind in (ChatEvent.CHAT_WAITING, ChatEvent.GOT_SERVER_NOTICE), (kind, arg)


def pointed(chat, web):
    chat._server_url = web.url  # the documented way to choose the server
    return chat


async def test_two_random_chats_pair_and_talk_both_ways(web):
    a, b = pointed(RandomChat(), web), pointed(RandomChat("en"), web)
    await call(a.start)
    await call(b.start)
    assert (await next_event(a, ChatEvent.CHAT_READY))[0] is ChatEvent.CHAT_READY
    assert (await next_event(b, ChatEvent.CHAT_READY))[0] is ChatEvent.CHAT_READY
    await call(a.send, "hello from a <b>bold</b>")
    assert await next_event(b, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "hello from a <b>bold</b>")
    await call(b.send, "héllo from b ✓")
    assert await next_event(a, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "héllo from b ✓")
    for i in range(5):  # order holds over several messages
        await call(a.send, f"m{i}")
    got = [(await next_event(b, ChatEvent.GOT_MESSAGE))[1] for _ in range(5)]
    assert got == [f"m{i}" for i in range(5)]
    await call(a.disconnect)
    assert (await next_event(b, ChatEvent.CHAT_ENDED))[0] is ChatEvent.CHAT_ENDED


async def test_typing_and_disconnect_reach_the_other_side(web):
    a, b = pointed(RandomChat(), web), pointed(RandomChat(), web)
    await call(a.start)
    await call(b.start)
    await next_event(a, ChatEvent.CHAT_READY)
    await next_event(b, ChatEvent.CHAT_READY)
    await call(b.start_typing)
    assert (await next_event(a, ChatEvent.PARTNER_STARTED_TYPING))[0] is ChatEvent.PARTNER_STARTED_TYPING
    await call(b.stop_typing)
    assert (await next_event(a, ChatEvent.PARTNER_STOPPED_TYPING))[0] is ChatEvent.PARTNER_STOPPED_TYPING
    await call(b.disconnect)
    assert (await next_event(a, ChatEvent.CHAT_ENDED))[0] is ChatEvent.CHAT_ENDED


async def test_interests_chat_gets_common_likes_with_chat_ready(web):
    a = pointed(InterestsChat(["Cats", "chess"]), web)
    b = pointed(InterestsChat(["dogs", "cats"]), web)
    await call(a.start)
    await call(b.start)
    assert await next_event(a, ChatEvent.CHAT_READY) == (ChatEvent.CHAT_READY, ["cats"])
    assert await next_event(b, ChatEvent.CHAT_READY) == (ChatEvent.CHAT_READY, ["cats"])
    await call(b.send, "meow")
    assert await next_event(a, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "meow")
    await call(a.disconnect)
    await next_event(b, ChatEvent.CHAT_ENDED)


async def test_spyee_chats_get_the_question_a_spy_asked(web, http):
    question = "Cats or dogs, and why?"
    spy = RawClient(http, web.url)
    await spy.start(ask=question)
    s1, s2 = pointed(SpyeeChat(), web), pointed(SpyeeChat(), web)
    await call(s1.start)
    await call(s2.start)
    assert await next_event(s1, ChatEvent.CHAT_READY) == (ChatEvent.CHAT_READY, question)
    assert await next_event(s2, ChatEvent.CHAT_READY) == (ChatEvent.CHAT_READY, question)
    await spy.until("connected")
    assert ["question", question] in spy.events
    await call(s1.send, "cats, obviously")
    assert await next_event(s2, ChatEvent.GOT_MESSAGE) == (ChatEvent.GOT_MESSAGE, "cats, obviously")
    said = await spy.until("spyMessage")
    assert said[2] == "cats, obviously" and said[1] in ("Stranger 1", "Stranger 2")
    await call(s2.start_typing)
    typing = await spy.until("spyTyping")
    assert typing[1] in ("Stranger 1", "Stranger 2") and typing[1] != said[1]
    # the spy only watches: what it sends reaches nobody and it is told so
    status, body = await spy.post("/send", msg="I am the spy")
    assert (status, body) == (200, "win")
    await spy.until(lambda e: e[0] == "serverMessage" and "spy" in e[1])
    await call(s1.disconnect)
    gone = await spy.until("spyDisconnected")
    assert gone[1] == said[1]
    assert (await next_event(s2, ChatEvent.CHAT_ENDED))[0] is ChatEvent.CHAT_ENDED
    assert not any(e[0] == "gotMessage" and "I am the spy" in e[1] for e in spy.events)
