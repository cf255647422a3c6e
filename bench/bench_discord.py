"""Discord platform latency with 500 active threads: MESSAGE_CREATE received → hub, and hub → REST request."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from bench.common import emit, percentile
from bridge.events import Connected, Message, Start
from tests.discord.conftest import bridge
from tests.discord.fakediscord import FakeDiscord

THREADS = 500
SAMPLES = 2000


async def _run() -> None:
    server = FakeDiscord()
    await server.start()
    try:
        async with bridge(server, max_sessions_per_guild=THREADS + 10) as b:
            rec = b.platforms["rec"]
            arrived: dict[str, float] = {}
            waiters: dict[str, asyncio.Future] = {}
            deliver = rec.deliver

            async def timed_deliver(room, event):  # the other side of the hub: stamp arrivals
                if isinstance(event, Message):
                    arrived[event.text] = time.perf_counter()
                    fut = waiters.pop(event.text, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                await deliver(room, event)

            rec.deliver = timed_deliver
            pairs: list[tuple[int, int, str]] = []
            for i in range(THREADS):
                uid = server.add_user(f"user{i}")
                known = {t["id"] for t in server.threads()}
                await server.slash(uid, server.text_channels[i % 2], "start")
                [thread] = await server.wait_until(lambda: [t for t in server.threads() if t["id"] not in known])
                tid = int(thread["id"])
                await server.wait_until(lambda: any(m["embeds"] for m in server.bot_messages(tid)))
                rec.send(f"r{i}", Start())
                await rec.wait_for(f"r{i}", Connected, timeout=10)
                pairs.append((uid, tid, f"r{i}"))
            await asyncio.sleep(0.5)

            inbound: list[float] = []
            for k in range(SAMPLES):
                uid, tid, room = random.choice(pairs)
                token = f"in{k}"
                fut = waiters[token] = asyncio.get_running_loop().create_future()
                began = time.perf_counter()
                await server.user_message(tid, uid, token)
                await asyncio.wait_for(fut, 5)
                inbound.append(arrived[token] - began)

            outbound: list[float] = []
            for k in range(SAMPLES):
                uid, tid, room = random.choice(pairs)
                token = f"out{k}"
                seen = len(server.requests)
                began = time.perf_counter()
                rec.send(room, Message(token))
                rec_ = await server.wait_until(
                    lambda: next((r for r in server.requests[seen:] if (r.body or {}).get("content") == token), None)
                )
                outbound.append(rec_.at - began)
            active = len(b.platforms["dc"].threads)
    finally:
        await server.stop()
    ms = 1000.0
    emit("discord_inbound_latency_p50", percentile(inbound, 50) * ms, "ms", threads=active,
         path="MESSAGE_CREATE sent by the server → delivered on the other side of the hub")
    emit("discord_inbound_latency_p99", percentile(inbound, 99) * ms, "ms", target="<= 5", threads=active)
    emit("discord_outbound_latency_p50", percentile(outbound, 50) * ms, "ms", threads=active,
         path="stranger message submitted on the other side of the hub → webhook POST reached the server")
    emit("discord_outbound_latency_p99", percentile(outbound, 99) * ms, "ms", target="<= 5", threads=active)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    asyncio.run(_run())


if __name__ == "__main__":
    main()
