"""The moderation entry point: start refusals (ban, throttle), decisions both ways, reports; injected clocks."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.events import Room
from bridge.policy.config import PolicySection
from bridge.policy.moderator import Moderator, wait_notice
from bridge.policy.rules import Action, ContentRules
from bridge.store import MemoryStore

POLICY = PolicySection.model_validate(
    {
        "lists": {
            "mask": {"action": "mask", "words": ["shit"]},
            "hold": {"action": "hold", "words": ["kill yourself"]},
            "end": {"action": "end", "words": ["slurword"]},
        },
        "platforms": {"discord": {"links": "block"}},
        "scopes": {"discord:77": {"lists": {"mask": {"enabled": False}}}},
        "start_cooldown": "3s",
        "max_starts": 100,
        "first_message_cooldown": "2s",
        "report_threshold": 2,
    }
)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def parts():
    wall, mono = Clock(1_700_000_000.0), Clock(50.0)
    moderator = Moderator(POLICY, MemoryStore(), clock=wall, monotonic=mono)
    moderator.scope_of = lambda room: {"thread-in-77": "77", "thread-in-12": "12"}.get(room.id)
    return moderator, wall, mono


async def test_a_banned_user_is_told_plainly_with_the_time_left(parts):
    moderator, wall, _ = parts
    await moderator.sanctions.ban("discord:0123456789abcdef", 7200, "spam")
    wall.now += 1800
    assert await moderator.start_refusal("discord:0123456789abcdef") == (
        "You are banned from starting chats on this bridge for 1 h 30 min more. Reason: spam."
    )
    assert await moderator.start_refusal("discord:fedcba9876543210") is None


async def test_a_matrix_server_glob_refuses_its_users(parts):
    moderator, _, _ = parts
    await moderator.sanctions.ban("matrix:*:spam.example", None, "")
    assert await moderator.start_refusal("matrix:0000000000000000", server="spam.example") is not None
    assert await moderator.start_refusal("matrix:0000000000000000", server="good.example") is None


async def test_starts_are_throttled_per_user(parts):
    moderator, _, mono = parts
    assert await moderator.start_refusal("web:aaaaaaaaaaaaaaaa") is None
    assert await moderator.start_refusal("web:aaaaaaaaaaaaaaaa") == "You are starting chats too quickly. Try again in 3 s."
    assert await moderator.start_refusal("web:bbbbbbbbbbbbbbbb") is None
    mono.now += 3
    assert await moderator.start_refusal("web:aaaaaaaaaaaaaaaa") is None
    assert await moderator.start_refusal(None) is None


def test_decisions_from_the_user(parts):
    moderator, _, _ = parts
    ok = moderator.from_user(Room("web", "r"), "hello")
    assert (ok.relay, ok.text, ok.notice, ok.end) == (True, "hello", None, False)
    masked = moderator.from_user(Room("web", "r"), "oh shit")
    assert (masked.relay, masked.text, masked.notice) == (True, "oh ****", None)
    held = moderator.from_user(Room("web", "r"), "kill   yourself")
    assert (held.relay, held.notice, held.end) == (False, "Your message was not sent: it contains words this bridge does not relay.", False)
    ended = moderator.from_user(Room("web", "r"), "s l u r w o r d")
    assert (ended.relay, ended.end) == (False, True)
    assert ended.notice == "Your message was not sent: it breaks this bridge's rules."
    link = moderator.from_user(Room("discord", "thread-in-12"), "see evil.com")
    assert (link.relay, link.notice) == (False, "Your message was not sent: links are not allowed here.")
    invite = moderator.from_user(Room("web", "r"), "discord.gg/abc")
    assert (invite.relay, invite.notice) == (False, "Your message was not sent: Discord invites are not allowed here.")
    assert moderator.from_user(Room("discord", "thread-in-77"), "oh shit").text == "oh shit"  # the guild switched the list off


def test_decisions_from_the_stranger(parts):
    moderator, _, _ = parts
    held = moderator.from_stranger(Room("matrix", "!r:x"), "kill yourself", "Stranger 2")
    assert (held.relay, held.end, held.notice) == (False, False, "Stranger 2 sent a message that breaks this bridge's rules; it was not shown.")
    ended = moderator.from_stranger(Room("matrix", "r"), "slurword")
    assert (ended.relay, ended.end, ended.notice) == (False, True, "The stranger sent a message that breaks this bridge's rules; it was not shown.")
    masked = moderator.from_stranger(Room("web", "r"), "ѕһit")
    assert (masked.relay, masked.text, masked.verdict.action) == (True, "****", Action.MASK)


def test_first_message_cooldown(parts):
    moderator, _, mono = parts
    connected = mono.now
    assert moderator.first_message_wait(connected) == pytest.approx(2.0)
    mono.now += 2
    assert moderator.first_message_wait(connected) == 0.0
    assert wait_notice(1.2) == "Your message was not sent: wait 2 s before your first message in a new chat."


async def test_reports_feed_strikes(parts):
    moderator, _, _ = parts
    assert await moderator.report(None, "web:x") is None
    assert not (await moderator.report("web:1111111111111111", "web:9999999999999999")).strike
    outcome = await moderator.report("web:2222222222222222", "web:9999999999999999")
    assert outcome.strike
    assert (await moderator.start_refusal("web:9999999999999999")).startswith("You are banned from starting chats on this bridge for 1 h more.")


@given(st.text(max_size=40), st.sampled_from(["web", "discord", "matrix"]))
@settings(max_examples=300, deadline=None)
def test_the_clearly_allowed_fast_path_agrees_with_the_decisions(text, platform):
    # The session asks `clearly_allowed` first and relays unchanged on True: that must be exactly
    # when from_user / from_stranger (of a fresh moderator) relay it unchanged naming no rule.
    room = Room(platform, "r")
    for policy in (PolicySection(), POLICY):
        moderator, fresh = Moderator(policy, MemoryStore()), Moderator(policy, MemoryStore())
        decisions = (fresh.from_user(room, text), fresh.from_stranger(room, text))
        unchanged = all(
            (d.relay, d.text, d.notice, d.end, d.verdict.rule) == (True, text, None, False, None) for d in decisions
        )
        assert moderator.clearly_allowed(room, text) == unchanged
        assert (moderator.from_user(room, text), moderator.from_stranger(room, text)) == decisions
        # `relayed`, which the session asks first: the text each decision relays, or None.
        assert all(Moderator(policy, MemoryStore()).relayed(room, text) == (d.text if d.relay else None) for d in decisions)
        assert moderator.relayed(room, text) == (decisions[0].text if decisions[0].relay else None)
        if unchanged:
            assert moderator.relayed(room, text) is text
    listed = Moderator(POLICY, MemoryStore())
    assert listed.clearly_allowed(room, "hi there") and not listed.clearly_allowed(room, "oh shit")
    default = Moderator(PolicySection(), MemoryStore())
    assert default.clearly_allowed(room, "hi there") and not default.clearly_allowed(room, "discord.gg/x")


def test_scoped_rooms_ask_their_scope_only_while_some_scope_has_a_layer():
    asked = []
    plain = Moderator(PolicySection(), MemoryStore())
    plain.scope_of = lambda room: asked.append(room) or "77"
    assert plain.from_user(Room("discord", "t"), "hello").relay
    assert asked == []  # no [policy.scopes]: the room's guild cannot change its rules
    plain.set_policy(PolicySection.model_validate({"scopes": {"discord:77": {"links": "block"}}}))
    assert plain.from_user(Room("discord", "t"), "see evil.com").relay is False  # the guild's layer applies
    assert asked


# The same lists, with every kind of verdict: links defanged on Matrix (relayed, changed).
CACHE_POLICY = PolicySection.model_validate(
    {
        "lists": POLICY.model_dump()["lists"],
        "platforms": {"discord": {"links": "block"}, "matrix": {"links": "defang"}},
        "scopes": {"discord:77": {"lists": {"mask": {"enabled": False}}}},
    }
)
_CACHED_TEXTS = st.sampled_from(["hi there", "shit happens", "kill yourself", "slurword", "see example.com/x.com", "ѕһit", "fine", "d i s c o r d . g g / x"])


@given(st.lists(st.tuples(st.one_of(_CACHED_TEXTS, st.text(max_size=30)), st.sampled_from(["web", "discord", "matrix"]), st.sampled_from(["0", "77"]), st.booleans()), max_size=40))
@settings(max_examples=200, deadline=None)
def test_remembered_verdicts_are_those_of_the_full_check(steps):
    # Each relayed text is checked by both sessions: the second check (and `clearly_allowed`,
    # which the session asks first) may come from the verdicts remembered per compiled rules, and
    # must be what a fresh check decides, whatever came before; the bound clears them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("bridge.policy.moderator.RECENT_VERDICTS", 5)
        _check_steps(steps)


def _check_steps(steps):
    moderator = Moderator(CACHE_POLICY, MemoryStore())
    moderator.scope_of = lambda room: room.id
    for text, platform, scope, outgoing in steps:
        room = Room(platform, scope)
        fresh = Moderator(CACHE_POLICY, MemoryStore())
        fresh.scope_of = moderator.scope_of
        expected = fresh.from_user(room, text) if outgoing else fresh.from_stranger(room, text)
        unchanged = (expected.relay, expected.text, expected.notice, expected.end) == (True, text, None, False)
        if moderator.clearly_allowed(room, text):
            assert unchanged and (expected.verdict.action, expected.verdict.rule) == (Action.ALLOW, None)
        # What the session asks first, then (when it is not relayed) the decision for the notice.
        assert moderator.relayed(room, text) == (expected.text if expected.relay else None)
        got = moderator.from_user(room, text) if outgoing else moderator.from_stranger(room, text)
        assert got == expected
        assert moderator.clearly_allowed(room, text) == (unchanged and expected.verdict.rule is None)
        if got.relay:  # the receiver's check of what was relayed: maybe remembered from the sender's
            again = fresh.from_stranger(room, got.text)
            assert moderator.from_stranger(room, got.text) == again
            assert moderator.relayed(room, got.text) == (again.text if again.relay else None)
        assert all(len(layer.recent) + len(layer.older) <= 5 for layer in moderator._recent.values())


def test_verdicts_just_given_are_found_again_across_the_newer_half_filling_up(monkeypatch):
    # The receiver's check of a relayed text comes some checks after the sender's: it must find
    # the verdict (no second check) though the newer half filled up and became the older since.
    monkeypatch.setattr("bridge.policy.moderator.RECENT_VERDICTS", 8)
    checked = []
    changes = ContentRules.changes
    monkeypatch.setattr(ContentRules, "changes", lambda rules, text: checked.append(text) or changes(rules, text))
    moderator = Moderator(POLICY, MemoryStore())
    room = Room("web", "r")
    texts = [f"hello {n}" for n in range(4)] + ["oh shit"]
    assert [moderator.relayed(room, text) for text in texts] == [*texts[:-1], "oh ****"]
    assert checked == texts
    assert [moderator.relayed(Room("web", "other"), text) for text in texts] == [*texts[:-1], "oh ****"]
    assert checked == texts  # all found again: three in the older half, two in the newer
    (layer,) = moderator._recent.values()
    assert len(layer.older) + len(layer.recent) <= 8
    for n in range(4, 20):  # whenever the newer half fills up, the last three texts are still found
        moderator.relayed(room, f"hello {n}")
        before = len(checked)
        assert [moderator.relayed(room, f"hello {m}") for m in range(max(0, n - 2), n + 1)] == [f"hello {m}" for m in range(max(0, n - 2), n + 1)]
        assert len(checked) == before
        assert len(layer.older) + len(layer.recent) <= 8
    assert moderator.relayed(room, "hello 0") == "hello 0" and checked[-1] == "hello 0"  # pushed out: checked again


def test_platforms_without_a_layer_of_their_own_share_the_base_rules_and_their_verdicts(monkeypatch):
    # Web and Matrix have no [policy.platforms] layer here: one compiled rules for both, so a text
    # a web user sent is found again (not checked again) when the Matrix side receives it.
    assert POLICY.rules_for("web") is POLICY.rules_for("matrix") is POLICY.rules_for("")
    assert POLICY.rules_for("discord") is not POLICY.rules_for("web")  # links blocked there
    assert POLICY.rules_for("discord", "77") is not POLICY.rules_for("discord")
    checked = []
    changes = ContentRules.changes
    monkeypatch.setattr(ContentRules, "changes", lambda rules, text: checked.append(text) or changes(rules, text))
    moderator = Moderator(POLICY, MemoryStore())
    assert moderator.relayed(Room("web", "w"), "oh shit, see evil.com") == "oh ****, see evil.com"
    assert moderator.relayed(Room("matrix", "m"), "oh ****, see evil.com") == "oh ****, see evil.com"
    assert moderator.relayed(Room("matrix", "m"), "oh shit, see evil.com") == "oh ****, see evil.com"
    assert checked == ["oh shit, see evil.com", "oh ****, see evil.com"]
    assert moderator.relayed(Room("discord", "d"), "oh shit, see evil.com") is None  # its own rules: checked
    assert checked[-1] == "oh shit, see evil.com" and len(checked) == 3


def test_a_new_policy_forgets_the_remembered_verdicts():
    moderator = Moderator(PolicySection(), MemoryStore())
    room = Room("web", "r")
    assert moderator.from_user(room, "shit, see discord").relay
    assert moderator.clearly_allowed(room, "shit, see discord")
    moderator.set_policy(POLICY)
    assert not moderator.clearly_allowed(room, "shit, see discord")
    assert moderator.from_user(room, "shit, see discord").text == "****, see discord"


async def test_rules_compiled_at_start_up_are_the_ones_the_first_message_uses():
    # A daemon compiles each platform's rules when it is built, so the first chat's first message
    # does not wait milliseconds for 1,000 words to compile; the check then uses those rules.
    from bridge.app import Bridge
    from bridge.config import parse_config

    cfg = parse_config(
        {
            "platforms": {"rec": {"plugin": "tests.helpers:RecordingPlatform"}},
            "policy": {"lists": {"mask": {"action": "mask", "words": ["shit"]}}},
        },
        env=False,
    )
    async with Bridge(cfg, store=MemoryStore()) as bridge:
        moderator = bridge.moderator
        compiled = dict(moderator._unscoped)
        assert set(compiled) == {"rec"}
        assert moderator.from_user(Room("rec", "1"), "oh shit").text == "oh ****"
        assert moderator._unscoped["rec"] is compiled["rec"]  # not compiled again at the first message
