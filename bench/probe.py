"""The probe pair of the hostile-load benchmarks: two web clients that meet through the hub and
chat both ways over the long-poll protocol, with unique tokens, per-request timeouts and strict
counts (sent, received, duplicates, out of order)."""

from __future__ import annotations

import asyncio
import time

from bench.bench_web import Client

__all__ = ["GAP", "REQUEST_TIMEOUT", "planned", "probe", "within"]

GAP = 0.02  # seconds between two probe messages of one side: 50 messages/s each way
REQUEST_TIMEOUT = 5.0  # a probe request that takes longer counts as failed (its message as lost)


def planned(seconds: float) -> int:
    """Messages the pair sends in `seconds` (both sides), had every request been answered at once."""
    return round(2 * seconds / GAP)


async def within(coro, timeout: float = REQUEST_TIMEOUT):
    return await asyncio.wait_for(coro, timeout)


async def probe(url: str, seconds: float, local: str) -> dict:
    """A pair from address `local` starts (again after a failed start) and chats both ways until
    `seconds` have passed, each side one message per GAP; latency = /send started → the partner's
    poll got it. Every token is unique."""
    result = {"paired": False, "paired_after_seconds": None, "start_attempts": 0, "sent": 0, "received": 0,
              "duplicates": 0, "out_of_order": 0, "failed_requests": 0, "latencies": []}
    began = time.monotonic()
    end = began + seconds
    while True:  # a user whose start failed tries again, until the time to chat is over
        a, b = Client(url, local), Client(url, local)
        result["start_attempts"] += 1
        try:
            first_a, first_b = await within(a.start()), await within(b.start())
            await within(asyncio.gather(a.until_connected(first_a), b.until_connected(first_b)), 10.0)
            break
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError):
            a.close()
            b.close()
            if time.monotonic() >= end:
                return result
            await asyncio.sleep(0.5)
    result["paired"] = True
    result["paired_after_seconds"] = round(time.monotonic() - began, 2)
    seconds = max(0.0, end - time.monotonic())
    sent: dict[str, float] = {}
    got: dict[str, list[str]] = {"a": [], "b": []}
    done = asyncio.Event()

    async def talk(me: Client, tag: str) -> None:
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            token = f"{tag}{n}"
            n += 1
            sent[token] = time.perf_counter()
            try:
                if await within(me.post("/send", msg=token)) != "win":
                    result["failed_requests"] += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                result["failed_requests"] += 1
                me.action.close()
                me.action.writer = None
            await asyncio.sleep(GAP)

    async def listen(me: Client, into: list[str]) -> None:
        while not done.is_set():
            try:
                events = await within(me.events(), 30.0)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                me.poll.close()
                me.poll.writer = None
                continue
            for event in events:
                if event[0] == "gotMessage":
                    into.append(event[1])
                    if event[1] in sent:
                        result["latencies"].append(time.perf_counter() - sent[event[1]])

    listeners = [asyncio.create_task(listen(b, got["b"])), asyncio.create_task(listen(a, got["a"]))]
    await asyncio.gather(talk(a, "a"), talk(b, "b"))
    deadline = time.monotonic() + REQUEST_TIMEOUT
    while len(got["a"]) + len(got["b"]) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    done.set()
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    a.close()
    b.close()
    for side, tag in (("b", "a"), ("a", "b")):
        tokens = got[side]
        result["duplicates"] += len(tokens) - len(set(tokens))
        numbers = [int(t[1:]) for t in tokens if t.startswith(tag)]
        result["out_of_order"] += sum(1 for x, y in zip(numbers, numbers[1:]) if y < x)
    result["sent"] = len(sent)
    result["received"] = len((set(got["a"]) | set(got["b"])) & set(sent))
    return result
