"""A server's policy layer on top of the operator's, its stored forms, and the settings' accept lists."""

from __future__ import annotations

from bridge.events import Room
from bridge.policy.config import PolicySection
from bridge.policy.moderator import Moderator
from bridge.policy.rules import LinkAction
from bridge.store import MemoryStore
from plugins.discord.guilds import GuildPolicy, Guilds, GuildSettings


def KV():
    """The platform's key/value space of a real (in-memory) store."""
    return MemoryStore().state_for("dc")


def keys(state) -> set[str]:
    return {key for namespace, key in state.store._kv if namespace == state.namespace}


OPERATOR = {
    "lists": {"base": {"action": "mask", "words": ["weasel"]}},
    "scopes": {"dc:7": {"links": "block", "lists": {"ops": {"action": "hold", "words": ["ferret"]}}}},
}


def moderator() -> Moderator:
    m = Moderator(PolicySection.model_validate(OPERATOR), MemoryStore())
    m.scope_of = lambda room: room.id  # here a room's id is its guild's
    return m


def check(m: Moderator, guild: str, text: str):
    return m.from_user(Room("dc", guild), text)


def test_a_server_layer_goes_on_top_of_the_operators_and_comes_off_cleanly():
    m = moderator()
    operator_layer = m.policy.scopes["dc:7"]
    guilds = Guilds("dc", KV())
    mine = GuildPolicy(links=LinkAction.ALLOW).with_word("okapi", "end")
    guilds.apply(m, {7: mine})
    assert check(m, "7", "an okapi").end
    assert not check(m, "7", "a ferret").relay  # the operator's scope list still holds
    assert check(m, "7", "a weasel").text == "a ******"  # and the base list masks
    assert check(m, "7", "https://example.com").relay  # the server allows links here
    assert check(m, "8", "https://example.com").relay  # another guild: the base (allow)
    assert check(m, "8", "an okapi").relay
    guilds.apply(m, {7: GuildPolicy()})  # everything taken back
    assert m.policy.scopes["dc:7"] == operator_layer
    assert check(m, "7", "an okapi").relay and not check(m, "7", "https://example.com").relay


def test_a_guild_without_an_operator_layer_loses_its_scope_when_emptied():
    m = moderator()
    guilds = Guilds("dc", KV())
    guilds.apply(m, {9: GuildPolicy().with_word("okapi", "hold")})
    assert "dc:9" in m.policy.scopes
    guilds.apply(m, {9: GuildPolicy()})
    assert "dc:9" not in m.policy.scopes


def test_stored_forms_round_trip_and_moving_a_word_changes_its_action():
    policy = GuildPolicy(invites=LinkAction.DEFANG).with_word("okapi", "hold").with_word("zebra", "mask")
    moved = policy.with_word("okapi", "end")
    assert moved.action_of("okapi") == "end" and moved.count() == 2
    assert GuildPolicy.load(moved.dump()) == moved
    assert GuildPolicy().dump() is None  # nothing to keep: the key is deleted
    settings = GuildSettings(platforms=("dc", "web"), min_account_age=3600.0)
    assert GuildSettings.load(settings.dump()) == settings
    assert GuildSettings.load('{"only_guild": true, "from_a_newer_version": 1}') == GuildSettings(only_guild=True)


def test_settings_become_an_accept_list():
    assert GuildSettings().accept("dc", 7) == ()
    assert GuildSettings(platforms=("dc", "web")).accept("dc", 7) == ("dc", "web")
    assert GuildSettings(same_platform=True, platforms=("web",)).accept("dc", 7) == ("dc",)
    assert GuildSettings(only_guild=True, same_platform=True).accept("dc", 7) == ("dc:7",)


async def test_each_guild_has_its_own_keys():
    state = KV()
    guilds = Guilds("dc", state)
    await guilds.save_settings(1, GuildSettings(only_guild=True))
    await guilds.save_settings(2, GuildSettings(min_account_age=60.0))
    await guilds.count(1, "sessions")
    await guilds.count(1, "sessions")
    assert keys(state) == {"guild:1:settings", "guild:2:settings", "guild:1:stats"}
    assert (await guilds.settings(1)).only_guild and not (await guilds.settings(2)).only_guild
    assert await guilds.counts(1) == {"sessions": 2}
    await guilds.save_settings(1, GuildSettings())  # back to the defaults: the key goes
    assert "guild:1:settings" not in keys(state)
