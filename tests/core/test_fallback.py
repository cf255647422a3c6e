"""The one fallback table for text-only chats, for every kind of stranger service, and through a session."""

import asyncio

import pytest

from bridge.events import Connected, Edit, Image, Message, Reaction, Retract, ServerNotice, Start
from bridge.fallback import CORRECTED, RULES, plain, quoted
from plugins.hub.backend import HubChat
from plugins.omegle.chat import OmegleChat
from plugins.pychat.backend import PychatChat
from plugins.remandzana.backend import RemandzanaChat
from plugins.roulette.backend import RouletteChat
from tests.core.richplatform import RICH
from tests.core.scripted import SCRIPTED
from tests.helpers import running


@pytest.mark.parametrize(
    ("event", "quote", "expected"),
    [
        (Edit("r", "new text"), None, "* corrected: new text"),
        (Message("yes"), "do you like tea?", "> do you like tea?\nyes"),
        (Message("yes"), None, "yes"),
        (Message("yes"), "q" * 500, "> " + "q" * 56 + " […]\nyes"),  # the quote is short
        (Reaction("r", "👍"), None, None),
        (Retract("r"), None, None),
    ],
)
def test_the_rule_table(event, quote, expected):
    assert plain(event, quote) == expected


def test_every_rule_says_what_it_does_and_only_text_rules_send():
    assert {kind for kind, rule in RULES.items() if rule.sends} == {Message, Edit}
    assert RULES[Retract].notice and RULES[Image].notice and RULES[Reaction].notice is None
    assert all(rule.why for rule in RULES.values())


def test_a_long_edit_or_reply_is_cut_to_the_backend_limit_and_the_message_wins_over_its_quote():
    assert len(plain(Edit("r", "x" * 200), limit=100)) == 100
    assert quoted("m" * 95, "the quote", 100) == "m" * 95


def test_only_the_hub_carries_rich_events_the_peer_backends_get_the_table():
    assert HubChat.rich is True
    assert [c.rich for c in (OmegleChat, RemandzanaChat, RouletteChat, PychatChat)] == [False] * 4


async def test_a_session_on_a_text_only_backend_applies_the_table():
    data = {"platforms": {"rec": {"plugin": RICH}}, "backends": {"s": {"plugin": SCRIPTED}}, "bridge": {"default_backend": "s"}}
    async with running(data) as b:
        rec, backend = b.platforms["rec"], b.backends["s"]
        rec.send("a", Start())
        chat = await backend.next_chat(0)
        chat.stranger(Connected(), Message("a stranger line"))
        await rec.wait_for("a", Message)
        line = rec.id_of("a", "a stranger line")
        rec.send("a", Message("mine", ref="u1"))
        rec.send("a", Edit("u1", "mine, fixed"))
        rec.send("a", Reaction(line, "👍"))
        rec.send("a", Message("answer", ref="u2", reply_to=line))
        rec.send("a", Retract("u1"))
        rec.send("a", Retract("u2"))  # told once per chat
        rec.send("a", Edit("u1", "an edit after the deletion"))
        rec.send("a", Message("", ref="u3", image=Image(b"x", "image/png", 1, 1)))
        rec.send("a", Message("marker", ref="u4"))
        await rec.wait_for("a", lambda e: isinstance(e, ServerNotice) and "picture" in e.text)
        async with asyncio.timeout(5):
            while Message("marker") not in chat.sent:  # a positive marker: every event before it was handled
                await asyncio.sleep(0.005)
        assert chat.sent == [Message("mine"), Message(CORRECTED + "mine, fixed"), Message("> a stranger line\nanswer"), Message("marker")]
        assert [e.text for e in rec.events("a", ServerNotice)] == [RULES[Retract].notice, RULES[Image].notice]
