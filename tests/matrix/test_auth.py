"""Credentials on a real Synapse: a wrong password or a revoked token fails start-up (exit 2); a token revoked mid-chat ends each session once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote

from bridge.events import Connected, Disconnected, Message, Start, Waiting
from tests.helpers import running

from .conftest import bridge_config, paired, unique

ROOT = Path(__file__).resolve().parents[2]


def daemon(tmp: Path, synapse_url: str, user_id: str, **credentials: str) -> subprocess.CompletedProcess:
    """Run `stranger-bridge run` with only a Matrix platform named `mx`; at most 60 s."""
    lines = [f'{key} = "{value}"' for key, value in credentials.items()]
    cfg = tmp / "config.toml"
    cfg.write_text(
        f"""
[bridge]
state = "{tmp / 'state.sqlite3'}"
log_level = "INFO"
[platforms.mx]
plugin = "matrix"
homeserver = "{synapse_url}"
user_id = "{user_id}"
sync_timeout = 1.0
{chr(10).join(lines)}
"""
    )
    return subprocess.run(
        [sys.executable, "-m", "bridge", "run", "-c", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def client_call(url: str, method: str, path: str, token: str) -> dict:
    req = urllib.request.Request(
        url + path, data=b"{}" if method == "POST" else None, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


async def test_wrong_password_fails_start_up_with_exit_2(matrix, synapse, tmp_path):
    bot = await matrix.account()
    res = await asyncio.to_thread(daemon, tmp_path, synapse.url, bot["user_id"], password="not-the-password")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "platform mx" in res.stderr and "M_FORBIDDEN" in res.stderr
    assert "not-the-password" not in res.stderr


async def test_revoked_token_fails_start_up_with_exit_2(matrix, synapse, tmp_path):
    bot = await matrix.account()
    await asyncio.to_thread(client_call, synapse.url, "POST", "/_matrix/client/v3/logout", bot["access_token"])
    res = await asyncio.to_thread(
        daemon, tmp_path, synapse.url, bot["user_id"], access_token=bot["access_token"], device_id=bot["device_id"]
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert "platform mx" in res.stderr and "M_UNKNOWN_TOKEN" in res.stderr
    assert bot["access_token"] not in res.stderr


async def test_token_revoked_mid_chat_ends_each_session_with_one_notice(matrix, synapse, caplog):
    bot = await matrix.account()
    admin = await asyncio.to_thread(synapse.register, unique("admin"), "pw", True)
    alice = await matrix.user("alice")
    bob = await matrix.user("bob")
    me = bot["user_id"]
    caplog.set_level(logging.INFO, logger="plugins.matrix")
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])) as b:
        rec = b.platforms["rec"]
        await paired(b, alice, me, "r1")
        await paired(b, bob, me, "r2")
        # The operator removes the bot's device (and so its token) with the admin API.
        path = f"/_synapse/admin/v2/users/{quote(me)}/devices/{quote(bot['device_id'])}"
        await asyncio.to_thread(client_call, synapse.url, "DELETE", path, admin["access_token"])
        for room in ("r1", "r2"):
            await rec.wait_for(room, Disconnected, timeout=30)
        # Markers: each stranger starts again; no second notice came before the answer to that.
        def after_the_notice(room: str, kind: type):
            events = rec.events(room)
            first = next(i for i, e in enumerate(events) if isinstance(e, Disconnected))
            return lambda _: any(isinstance(e, kind) for e in rec.events(room)[first + 1 :])

        rec.send("r1", Start())
        await rec.wait_for("r1", after_the_notice("r1", Waiting), timeout=20)
        rec.send("r2", Start())
        await rec.wait_for("r2", after_the_notice("r2", Connected), timeout=20)
        for room in ("r1", "r2"):
            assert len(rec.events(room, Disconnected)) == 1, rec.events(room)
        revoked = [r for r in caplog.records if r.name.startswith("plugins.matrix") and "M_UNKNOWN_TOKEN" in r.getMessage()]
        assert revoked, [r.getMessage() for r in caplog.records]
        assert bot["access_token"] not in caplog.text


async def test_refused_saved_login_falls_back_to_the_password_once(matrix, synapse, tmp_path):
    """With `store_path`, a restart reuses the saved token; when that token was revoked, the password logs in again."""
    bot = await matrix.account()  # registered with the password "pw"
    alice = await matrix.user("alice")
    me = bot["user_id"]
    saved = tmp_path / "login.json"
    cfg = bridge_config(synapse.url, bot, access_token=None, password="pw", store_path=str(saved), allowed_inviters=[":localhost"])
    async with running(cfg):
        first = json.loads(saved.read_text())
    assert first["user_id"] == me and oct(saved.stat().st_mode & 0o777) == "0o600"
    await asyncio.to_thread(client_call, synapse.url, "POST", "/_matrix/client/v3/logout", first["access_token"])
    async with running(cfg):
        rid = await alice.create_room([me])
        await alice.wait_member(rid, me, "join")
    second = json.loads(saved.read_text())
    assert second["access_token"] != first["access_token"]


async def test_a_message_the_revoked_token_cannot_send_is_told_then_the_chat_ends(matrix, synapse):
    """Logged out mid-chat (a long /sync poll): the stranger's next message is told as not delivered, then the chat ends."""
    bot = await matrix.account()
    alice = await matrix.user("alice")
    me = bot["user_id"]
    async with running(bridge_config(synapse.url, bot, allowed_inviters=[":localhost"], sync_timeout=120.0)) as b:
        rec, mx = b.platforms["rec"], b.platforms["mx"]
        await paired(b, alice, me, "r")
        # The logout wakes the bot's pending /sync (its device is gone), and the /sync after it would
        # be refused at once: held until the send was refused, so the send is the first to find out
        # (else the chat ends first, and the message crossing its end is dropped as any is then).
        syncs, sync = asyncio.Event(), mx.client.sync

        async def held_sync(*args, **kwargs):
            await syncs.wait()
            return await sync(*args, **kwargs)

        mx.client.sync = held_sync
        await asyncio.to_thread(client_call, synapse.url, "POST", "/_matrix/client/v3/logout", bot["access_token"])
        rec.send("r", Message("after the logout"))
        await rec.wait_for("r", lambda e: isinstance(e, Message), timeout=30)
        syncs.set()
        await rec.wait_for("r", Disconnected, timeout=30)
        told = [m.text for m in rec.events("r", Message)]
        assert told == ["[bridge] Your message was not delivered: “after the logout”"]
        assert mx.lost == "M_UNKNOWN_TOKEN"
