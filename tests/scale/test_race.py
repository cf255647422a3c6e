"""Race: 1,000 arrivals split over two instances at once never pair anyone twice or with themselves."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis.asyncio as aioredis

from bridge.events import Start
from plugins.hub.redis_pool import RedisPool

from .conftest import LEASE, PREFIX
from .hubs import shared_hubs

ARRIVALS = 1000
IN_FLIGHT = 64  # connects in flight per instance (each holds one Redis connection while its script runs)


async def test_a_thousand_arrivals_over_two_instances_pair_everyone_once(redis_server):
    chats: list = []
    async with shared_hubs(redis_server.url, "a", "b", prefix=PREFIX, lease=LEASE, chats=chats, repair_cooldown=0.0) as hubs:
        # Half the users arrive twice (two tabs, one on each instance): never paired with themselves.
        users = [f"u{i // 2 if i < ARRIVALS // 2 else i}" for i in range(ARRIVALS)]
        queues = [[i for i in range(ARRIVALS) if i % 2 == n] for n in range(2)]

        async def worker(n: int) -> None:
            while queues[n]:
                i = queues[n].pop()
                chats.append(await hubs[n].connect(Start(user=users[i], scope="rec")))

        await asyncio.gather(*(worker(n) for n in range(2) for _ in range(IN_FLIGHT)))
        assert len(chats) == ARRIVALS
        async with asyncio.timeout(60):  # every pairing reached both members' instances
            while sum(len(h.shared.waiting) for h in hubs) > 2:
                await asyncio.sleep(0.05)
        paired = [c for c in chats if c.conversation is not None]
        waiting = [c for c in chats if c.conversation is None]
        # Left waiting: one person, or two tabs of one person (nobody else is left for them).
        assert len(waiting) <= 1 or len({c.start.user for c in waiting}) == 1
        entries = Counter(c.entry.id for c in paired)
        assert set(entries.values()) == {1}  # each arrival in one conversation
        by_id = {c.entry.id: c for c in paired}
        for chat in paired:
            conv = chat.conversation
            assert len(conv.ids) == 2 and chat.entry.id in conv.ids
            other = next(m for m in conv.ids if m != chat.entry.id)
            assert conv.users[other] != chat.start.user  # never with themselves
            partner = by_id[other]  # the partner knows the same conversation, and only it
            assert partner.conversation.cid == conv.cid
        assert sum(len(h.shared.connected) for h in hubs) == len(paired)
        assert len(paired) + len(waiting) == ARRIVALS


async def test_a_waiter_taken_by_an_instance_that_died_before_telling_waits_again(redis_server):
    chats: list = []
    async with shared_hubs(redis_server.url, "b", prefix=PREFIX, lease=LEASE, chats=chats, repair_cooldown=0.0) as (hub,):
        y = await hub.connect(Start(user="y", scope="rec"))
        chats.append(y)
        first = y.entry.id
        raw = aioredis.Redis(port=redis_server.port, decode_responses=True)
        try:
            # Another instance's script takes y, and that instance dies before its "paired" is written.
            taken = await RedisPool(raw, prefix=PREFIX, owner="dead").arrive("taker")
            assert taken.partner is not None and taken.partner.id == first
        finally:
            await raw.aclose()
        async with asyncio.timeout(30):  # noticed at two renewals in a row: y is in the pool again
            while first in hub.shared.waiting or not hub.shared.waiting:
                await asyncio.sleep(0.05)
        x = await hub.connect(Start(user="x", scope="rec"))
        chats.append(x)
        assert x.conversation is not None and y.conversation is not None
        assert y.conversation.cid == x.conversation.cid
