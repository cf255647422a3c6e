"""config.example.toml documents every [policy] key, and its [policy] table is valid as written and uncommented."""

import re
from pathlib import Path

from bridge.config import load_config
from bridge.policy.config import LayerConfig, ListConfig, PolicySection

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "config.example.toml").read_text()


def _table(name: str) -> str:
    start = re.search(rf"^#? ?\[{re.escape(name)}\]", TEXT, re.M)
    assert start, f"config.example.toml lacks [{name}]"
    following = re.search(r"^#? ?\[", TEXT[start.end():], re.M)
    return TEXT[start.end() : start.end() + following.start()] if following else TEXT[start.end():]


def test_every_policy_key_is_documented():
    policy = _table("policy")
    for key in PolicySection.model_fields:
        if key in ("lists", "platforms", "scopes"):
            continue
        assert re.search(rf"^#? ?{key} =", policy, re.M), f"[policy] does not document {key}"
    lists = _table("policy.lists.profanity")
    for key in ListConfig.model_fields:
        assert re.search(rf"^#? ?{key} =", lists, re.M), f"[policy.lists.NAME] does not document {key}"
    layer = _table("policy.platforms.discord")
    assert set(LayerConfig.model_fields) == {"links", "invites", "lists"}
    assert re.search(r"^#? ?links =", layer, re.M)
    assert 'policy.scopes."discord:GUILD_ID"' in TEXT and 'policy.scopes."matrix:!ROOM:SERVER"' in TEXT


def test_the_documented_defaults_are_the_defaults():
    cfg = load_config(ROOT / "config.example.toml", env=False)
    assert cfg.policy.model_dump() == PolicySection().model_dump()
