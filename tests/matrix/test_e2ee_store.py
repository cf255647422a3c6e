"""Bad key stores, on a real Synapse: corrupt, another device's, or not matching the homeserver's keys: the start fails clearly (exit 2) and the file is kept."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from nio import AsyncClient, LoginResponse

from bridge.app import PlatformCredentialsError
from tests.helpers import running

from .conftest import bridge_config, notice_with
from .e2ee import crypto_user

REPO = Path(__file__).resolve().parents[2]


def store_file(keys: Path, bot: dict, device: str | None = None) -> Path:
    return keys / f"{bot['user_id']}_{device or bot['device_id']}.db"


async def login_again(url: str, bot: dict) -> dict:
    """A second device of the bot account (a new password login)."""
    client = AsyncClient(url, bot["user_id"])
    resp = await client.login("pw", device_name="other")
    await client.close()
    assert isinstance(resp, LoginResponse), resp
    return {**bot, "access_token": resp.access_token, "device_id": resp.device_id}


async def test_a_corrupt_store_fails_the_daemon_with_exit_2_and_is_kept(matrix, synapse, tmp_path):
    bot = await matrix.account()
    keys = tmp_path / "keys"
    keys.mkdir()
    garbage = b"this is not a key store\x00" * 100
    store_file(keys, bot).write_bytes(garbage)
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(
        f"""
[bridge]
state = "{tmp_path / 'state.sqlite3'}"

[platforms.mx]
plugin = "matrix"
homeserver = "{synapse.url}"
user_id = "{bot['user_id']}"
access_token = "{bot['access_token']}"
device_id = "{bot['device_id']}"
crypto_store = "{keys}"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGER_BRIDGE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "-c", str(cfg),
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    assert proc.returncode == 2, out.decode(errors="replace")
    assert "is not a readable key store" in out.decode() and "it was left as it is" in out.decode()
    assert store_file(keys, bot).read_bytes() == garbage


async def test_foreign_and_lost_stores_are_refused_and_kept(matrix, synapse, tmp_path):
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    me = bot["user_id"]
    keys = tmp_path / "keys"
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], crypto_store=str(keys))
    async with running(cfg):  # a first run: the device's keys are made, stored and uploaded
        rid = await alice.create_room([me])
        await alice.wait_message(rid, me, notice_with("!stranger start"))
    first = store_file(keys, bot)
    kept = first.read_bytes()

    # Another device of the bot, same directory: it starts with keys of its own; the first store is untouched.
    other = await login_again(synapse.url, bot)
    cfg_other = bridge_config(synapse.url, other, allowed_inviters=[":localhost"], crypto_store=str(keys))
    async with running(cfg_other):
        await alice.wait_for(lambda: other["device_id"] in alice.client.device_store[me], 30)  # alice encrypts for it
        await alice.send(rid, "!stranger help")
        await alice.wait_for(lambda: len([m for m in alice.messages(rid, me) if "I connect" in m["content"]["body"]]) == 2)
    assert store_file(keys, other).exists() and first.read_bytes() == kept

    # A store written by another device, under this device's name: refused, nothing changes in it.
    shutil.copyfile(first, store_file(keys, other))
    with pytest.raises(PlatformCredentialsError, match="holds the keys of another device"):
        async with running(cfg_other):
            pass
    assert store_file(keys, other).read_bytes() == kept

    # This device's store lost (the homeserver still has its keys): refused, not a silent new identity.
    first.unlink()
    with pytest.raises(PlatformCredentialsError, match="holds other encryption keys for device"):
        async with running(cfg):
            pass
