"""The remandzana backend's configuration table and its choice of lobby page."""

from __future__ import annotations

import pytest

from bridge.config import parse_config
from bridge.events import Mode, Start
from plugins.remandzana import backend as backend_module
from plugins.remandzana import protocol as protocol_module
from plugins.remandzana.backend import RemandzanaBackend, lobby_path


def parse(table: dict):
    return parse_config({"backends": {"rz": {"plugin": "remandzana", **table}}}, env=False)


def test_defaults_and_limits():
    cfg = parse({"url": "https://rz.example/prefix/"}).backends["rz"]
    assert (cfg.url, cfg.lobby, cfg.heartbeat_timeout) == ("https://rz.example/prefix", "two", 20.0)
    assert RemandzanaBackend.max_message_length == 500


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({}, "url"),
        ({"url": "ftp://rz.example"}, "url"),
        ({"url": "rz.example"}, "url"),
        ({"url": "http://rz.example", "lobby": "four"}, "lobby"),
        ({"url": "http://rz.example", "heartbeat_timeout": 0}, "heartbeat_timeout"),
        ({"url": "http://rz.example", "interests": ["x"]}, "interests"),
    ],
)
def test_bad_tables_name_the_key(table, key):
    with pytest.raises(Exception) as info:
        parse(table)
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("lobby", "start", "path"),
    [
        ("two", Start(), "/two"),
        ("three", Start(), "/three"),
        ("any", Start(), "/any"),
        ("global", Start(), "/global"),
        ("question", Start(), "/question/discuss"),
        ("question", Start(question="why?"), "/question/ask"),
        ("two", Start(mode=Mode.ASK, question="why?"), "/question/ask"),
        ("global", Start(mode=Mode.ANSWER), "/question/discuss"),
        ("two", Start(answer_questions=True), "/question/discuss"),
        ("two", Start(mode=Mode.GROUP), "/three"),
        ("question", Start(mode=Mode.GROUP), "/three"),
    ],
)
def test_lobby_path(lobby, start, path):
    assert lobby_path(lobby, start) == path


@pytest.mark.parametrize("module", [backend_module, protocol_module])
def test_all_is_sorted_and_resolves(module):
    assert list(module.__all__) == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)
