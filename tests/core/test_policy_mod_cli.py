"""`mod ban|unban|list|log` logic on a state file, also while another store (a running daemon) has it open."""

import argparse
import asyncio
import io

import pytest

from bridge.identity import user_key
from bridge.policy.config import PolicySection
from bridge.policy.mod_cli import ModError, add_mod_parser, mod_command
from bridge.policy.sanctions import Sanctions
from bridge.store import SQLiteStore, parse_store_url

POLICY = PolicySection()


def parse(*argv):
    parser = argparse.ArgumentParser(prog="stranger-bridge")
    add_mod_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["mod", *argv])


def run(state, *argv):
    out = io.StringIO()
    code = mod_command(parse(*argv), parse_store_url(f"sqlite:///{state}"), "stranger-bridge:", POLICY, out)
    return code, out.getvalue()


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "state.sqlite3"
    asyncio.run(SQLiteStore(path).close())  # a stopped daemon's state file
    return path


def test_ban_list_unban_log_on_a_stopped_daemons_file(state):
    key = user_key("discord", "80351110224678912")
    code, out = run(state, "ban", "discord:80351110224678912", "--for", "1h", "--reason", "spam links")
    assert code == 0
    assert out.startswith(f"banned {key} until ") and out.rstrip().endswith("(1 h left): spam links")
    code, out = run(state, "ban", "matrix:*:spam.example")
    assert (code, out) == (0, "banned matrix:*:spam.example until unbanned\n")
    code, out = run(state, "list")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{key}  banned until ") and lines[0].endswith("strikes: 0: spam links")
    assert lines[1] == "matrix:*:spam.example  banned until unbanned  strikes: 0"
    assert run(state, "unban", "discord:80351110224678912") == (0, f"unbanned {key}\n")
    assert run(state, "unban", "discord:80351110224678912") == (1, f"{key} was not banned\n")
    code, out = run(state, "log", "--limit", "2")
    assert code == 0
    assert [line.split("  ")[1:3] for line in out.splitlines()] == [["unban", key], ["ban", "matrix:*:spam.example"]]
    assert "80351110224678912" not in out  # the native id is never stored or shown


def test_empty_list_and_log(state):
    assert run(state, "list") == (0, "no bans or strikes\n")
    assert run(state, "log") == (0, "the moderation log is empty\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("ban", "nocolon"), "PLATFORM:USER"),
        (("ban", "discord:1", "--for", "soon"), "--for: not a duration"),
        (("ban", "discord:1", "--for", "0"), "above zero"),
        (("unban", ":x"), "PLATFORM:USER"),
    ],
)
def test_bad_input_is_a_clear_error(state, argv, message):
    with pytest.raises(ModError, match=message):
        run(state, *argv)


def test_no_state_file_is_an_error_and_nothing_is_created(tmp_path):
    missing = tmp_path / "nope.sqlite3"
    with pytest.raises(ModError, match="no state file"):
        run(missing, "list")
    assert not missing.exists()


def test_a_corrupt_state_file_is_an_error(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ModError, match="not a stranger-bridge state file"):
        run(bad, "list")


async def test_a_running_daemons_store_sees_the_ban_at_its_next_check(state):
    daemon = Sanctions(SQLiteStore(state))  # the daemon keeps its connection open
    key = user_key("discord", "42424242424242424")
    assert await daemon.check(key) is None
    code, _ = await asyncio.to_thread(run, state, "ban", "discord:42424242424242424", "--for", "2h")
    assert code == 0
    assert (await daemon.check(key)).until is not None
    await asyncio.to_thread(run, state, "unban", "discord:42424242424242424")
    assert await daemon.check(key) is None
    await daemon.store.close()


async def test_the_shared_state_file_reads_sessions_and_changes_only_plugin_state(state):
    from bridge.events import Room
    from bridge.store import SessionRecord, SharedStateFile, StoreError, held_by_a_daemon

    assert not held_by_a_daemon(state)
    daemon = SQLiteStore(state)
    assert held_by_a_daemon(state)
    await daemon.save_session(SessionRecord(Room("web", "x"), "chatting", "hub"))
    beside = SharedStateFile(state)
    assert [r.room for r in await beside.sessions()] == [Room("web", "x")]
    with pytest.raises(StoreError, match="belong to the running daemon"):
        await beside.save_session(SessionRecord(Room("web", "y"), "chatting", "hub"))
    with pytest.raises(StoreError, match="belong to the running daemon"):
        await beside.delete_session(Room("web", "x"))
    await beside.set("policy", "k", "v")
    assert await daemon.get("policy", "k") == "v"  # the daemon sees what was written beside it
    await beside.close()
    await daemon.close()
    assert not held_by_a_daemon(state)


def test_the_shared_state_file_refuses_a_foreign_file(tmp_path):
    import sqlite3

    from bridge.store import SharedStateFile, StoreError

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
    with pytest.raises(StoreError, match="not a stranger-bridge state file"):
        SharedStateFile(other)
