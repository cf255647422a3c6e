"""Property-based: random interleavings of start, next, stop, message, typing and disconnect from
both sides never lose or misroute a message and never leave a session stuck."""

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.events import Connected, Disconnected, Message, Report, ServerNotice, Start, StoppedTyping, Typing
from bridge.session import State
from tests.helpers import running

ROOMS = ("a", "b", "c")
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(ROOMS),
        st.sampled_from(["start", "stop", "message", "message", "typing", "stopped", "report", "pause", "settle"]),
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
        marks: dict[str, int] = {}  # token -> how much its room had been shown when it was sent
        rec.send("a", Start())  # a and b begin in a chat, so that messages meet live chats early on
        rec.send("b", Start())
        await rec.wait_for("b", Connected)
        await quiesce(b)
        for room, action in actions:
            if action == "start":
                rec.send(room, Start())
            elif action == "stop":
                rec.send(room, Disconnected())
            elif action == "message":
                token = f"t{next(tokens)}"
                sent[token] = room
                marks[token] = len(rec.shown[rec.room(room)])
                rec.send(room, Message(token))
            elif action == "typing":
                rec.send(room, Typing())
            elif action == "stopped":
                rec.send(room, StoppedTyping())
            elif action == "report":
                rec.send(room, Report())
            elif action == "pause":
                await asyncio.sleep(0.002)
            else:  # let everything queued happen: pairs meet, so later messages go into live chats
                await quiesce(b)
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

        # Every token not delivered is accounted for in its sender's room, after it was sent and
        # before any new chat began: by its own "not sent" notice (one notice per message), or as
        # the tail of a chat that ended while it was on its way (the other side left at the same
        # time). A loss followed by a later message of the same chat that did arrive is a failure.
        for room in ROOMS:
            shown = rec.shown[rec.room(room)]
            used: set[int] = set()
            mine = sorted((t for t, r in sent.items() if r == room), key=lambda t: int(t[1:]))
            for token in mine:
                if token in seen:
                    continue
                later = [marks[u] for u in mine if int(u[1:]) > int(token[1:]) and u in seen]
                assert covered(shown, marks[token], used, later), f"{token} from {room} lost without a notice: {shown}"

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


def covered(shown, mark, used, later_delivered) -> bool:
    for i in range(mark, len(shown)):
        event = shown[i]
        if isinstance(event, ServerNotice) and "was not sent" in event.text and i not in used:
            used.add(i)  # a "not sent" notice answers exactly one message
            return True
        if isinstance(event, Connected):
            return False  # a new chat began: an earlier end could not be about this message
        if isinstance(event, Disconnected):
            # The chat it was sent into ended: only its tail may be lost there, so no message
            # sent after it into the same chat (before this end was shown) may have arrived.
            return not any(m <= i for m in later_delivered)
    return False


def quiet(b) -> bool:
    # Nothing queued in any session, nor in any hub chat on its way to one.
    for session in b.router.sessions.values():
        if not session.inbox.empty() or (session.chat is not None and len(session.chat.queue)):
            return False
    return True


async def quiesce(b):
    for _ in range(300):
        await asyncio.sleep(0.005)
        if quiet(b):
            await asyncio.sleep(0.01)
            if quiet(b):
                return
    raise AssertionError("sessions never went quiet")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_random_interleavings(actions):
    asyncio.run(scenario(actions))
