"""Property-based: random interleavings of start, next, stop, message, typing and disconnect from
both sides never lose or misroute a message and never leave a session stuck."""

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.events import Connected, Disconnected, Message, Report, Start, StoppedTyping, Typing
from bridge.session import State
from tests.helpers import running

ROOMS = ("a", "b", "c")
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(ROOMS),
        st.sampled_from(["start", "stop", "message", "typing", "stopped", "report", "pause"]),
    ),
    min_size=1,
    max_size=40,
)


async def scenario(actions):
    data = {"backends": {"hub": {"plugin": "hub", "repair_cooldown": 0, "scan_limit": 8}}}
    async with running(data, user_burst=1000, stranger_burst=1000) as b:
        rec = b.platforms["rec"]
        tokens = itertools.count()
        sent: dict[str, str] = {}  # token -> sender room
        for room, action in actions:
            if action == "start":
                rec.send(room, Start())
            elif action == "stop":
                rec.send(room, Disconnected())
            elif action == "message":
                token = f"t{next(tokens)}"
                sent[token] = room
                rec.send(room, Message(token))
            elif action == "typing":
                rec.send(room, Typing())
            elif action == "stopped":
                rec.send(room, StoppedTyping())
            elif action == "report":
                rec.send(room, Report())
            else:
                await asyncio.sleep(0.002)
        await quiesce(b)

        # Never delivered to the wrong room, never twice, never out of order.
        seen: dict[str, str] = {}
        for room in ROOMS:
            order = [int(e.text[1:]) for e in rec.events(room, Message)]
            assert order == sorted(order), f"{room} saw tokens out of order: {order}"
            for e in rec.events(room, Message):
                assert e.text not in seen, f"{e.text} delivered twice"
                seen[e.text] = room
                assert sent[e.text] != room, f"{e.text} echoed to its sender"

        # Every token not delivered is covered by an explicit notice or end in the sender's room.
        for token, room in sent.items():
            if token not in seen:
                shown = rec.shown[rec.room(room)]
                assert any(type(e).__name__ in ("ServerNotice", "Disconnected") for e in shown), token

        # Nothing stuck: states agree with the hub, and at most one room waits in the random queue.
        hub = b.backends["hub"]
        states = {r: b.router.state_of(rec.room(r)) for r in ROOMS}
        searching = [r for r, s in states.items() if s is State.SEARCHING]
        assert hub.pool.waiting == len(searching)
        tickets = [b.router.sessions[rec.room(r)].chat.ticket for r in searching]
        for x, y in itertools.combinations(tickets, 2):
            assert not hub.pool.compatible(x, y), "two compatible rooms left waiting"

        # Liveness: afterwards every room can still meet a newcomer and talk (reports may
        # block old pairs for good, so each meets a fresh room).
        for room in ROOMS:
            rec.send(room, Disconnected())
        await quiesce(b)
        for room in ROOMS:
            before = len(rec.events(room, Connected))
            rec.send(room, Start())
            rec.send(f"new-{room}", Start())
            await rec.wait_count(room, Connected, before + 1, timeout=3)
            rec.send(f"new-{room}", Message(f"hi {room}"))
            await rec.wait_for(room, lambda e, r=room: isinstance(e, Message) and e.text == f"hi {r}", timeout=3)
            rec.send(room, Disconnected())


async def quiesce(b):
    for _ in range(300):
        await asyncio.sleep(0.005)
        if all(s.inbox.empty() for s in b.router.sessions.values()):
            await asyncio.sleep(0.01)
            if all(s.inbox.empty() for s in b.router.sessions.values()):
                return
    raise AssertionError("sessions never went quiet")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_random_interleavings(actions):
    asyncio.run(scenario(actions))
