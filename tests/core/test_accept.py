"""Start.scope and Start.accept: where a person starts from and whom they may meet, kept by the hub, refused elsewhere."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import Mode, Room, ServerNotice, Start, Waiting, accepts
from bridge.starts import complete_start, start_from_dict, start_to_dict
from plugins.hub.pool import Pool, Ticket
from tests.core.scripted import SCRIPTED
from tests.helpers import running


@pytest.mark.parametrize(
    "accept, scope, ok",
    [
        ((), None, True),
        ((), "web", True),
        (("discord",), "discord:1", True),
        (("discord",), "discord", True),
        (("discord",), "discordx:1", False),  # a prefix of a name is not the name
        (("discord:1",), "discord:1", True),
        (("discord:1",), "discord:12", False),
        (("discord:1",), "discord", False),
        (("matrix",), "matrix:!room:example.org", True),
        (("web", "matrix"), "web", True),
        (("discord",), None, False),  # nowhere known: not let in by a limited accept
    ],
)
def test_accepts(accept, scope, ok):
    assert accepts(accept, scope) is ok


def ticket(user, scope, accept=()):
    return Ticket(user=user, kind="random", scope=scope, accept=accept)


def test_pool_pairs_only_where_both_accept_each_other():
    pool = Pool()
    assert pool.arrive(ticket("w", "web")) is None
    assert pool.arrive(ticket("g1", "discord:1", ("discord:1",))) is None  # w is not of guild 1
    assert pool.arrive(ticket("g2", "discord:2")).members[0].user == "w"  # g2 takes w, not g1 (g1 refuses g2)
    assert pool.arrive(ticket("g3", "discord:3")) is None  # g1, alone in the pool, refuses another guild
    match = pool.arrive(ticket("g1b", "discord:1"))  # unlimited, of guild 1: g1 accepts it
    assert {m.user for m in match.members} == {"g1", "g1b"}
    assert {m.user for m in pool.arrive(ticket("x", "web")).members} == {"g3", "x"}
    # a limited arrival is refused by a waiting person whose own accept leaves it out, and waits
    assert pool.arrive(ticket("m", "matrix:!r", ("matrix",))) is None
    assert pool.arrive(ticket("d", "discord:3", ("discord",))) is None  # m is not discord; d is not matrix
    assert pool.waiting == 2
    assert {m.user for m in pool.arrive(ticket("m2", "matrix:!s")).members} == {"m", "m2"}


def test_scope_and_accept_are_filled_in_and_survive_the_store():
    start = complete_start(Start(accept=("discord:1",)), "hub", Room("rec", "a"))
    assert start.scope == "rec" and start.accept == ("discord:1",)
    kept = complete_start(Start(scope="dc:1"), "hub", Room("dc", "5"))
    assert kept.scope == "dc:1"
    assert start_from_dict(start_to_dict(start)) == start


async def test_a_backend_that_cannot_honour_accept_refuses_the_start_with_a_notice():
    config = {"backends": {"s": {"plugin": SCRIPTED}}, "bridge": {"default_backend": "s"}}
    async with running(config) as b:
        rec = b.platforms["rec"]
        rec.send("a", Start(accept=("rec",)))
        notice = await rec.wait_for("a", ServerNotice)
        assert notice.text == ("This server only allows strangers from some places, and this stranger service cannot "
                               "guarantee where its strangers come from. No chat was started.")
        assert b.backends["s"].chats == []
        rec.send("a", Start())  # the marker: an unlimited start goes on
        await rec.wait_for("a", Waiting)
        assert len(b.backends["s"].chats) == 1


_TEXT = st.none() | st.text(max_size=8)


@given(st.builds(Start, backend=_TEXT, interests=st.lists(st.text(max_size=5), max_size=3).map(tuple), language=st.sampled_from(["en", "de"]),
                 question=_TEXT, answer_questions=st.booleans(), mode=st.sampled_from(list(Mode)), strict_interests=st.booleans(),
                 user=_TEXT, scope=_TEXT, accept=st.lists(st.text(max_size=5), max_size=3).map(tuple), server=_TEXT, pairing=_TEXT))
@settings(max_examples=300, deadline=None)
def test_a_stored_start_reads_back_the_same_through_json(start):
    # The store keeps only the fields that differ from their defaults: reading back (after the
    # JSON a persistent store writes) gives the same Start, and a default Start keeps nothing.
    assert start_from_dict(json.loads(json.dumps(start_to_dict(start)))) == start
    assert start_to_dict(Start()) == {}
