"""Race: 1,000 arrivals split over two instances at once never pair anyone twice or with themselves."""

from __future__ import annotations

import asyncio
from collections import Counter

from bridge.events import Start

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
