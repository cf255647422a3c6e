"""The pure parts of encryption: key store file checks, refusal reasons, the undecryptable notices' wording and bounds."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from plugins.matrix import crypto, e2ee, keystore, undecryptable
from plugins.matrix.config import MatrixConfig
from plugins.matrix.crypto import KeyStoreError, check_store_file
from plugins.matrix.rooms import RoomState
from plugins.matrix.undecryptable import Undecryptable, told_text

BASE = {"plugin": "matrix", "homeserver": "https://hs.example", "user_id": "@bot:hs.example"}


@pytest.mark.parametrize("module", [crypto, e2ee, keystore, undecryptable])
def test_all_is_sorted_and_resolves(module):
    assert list(module.__all__) == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_store_file_checks(tmp_path):
    path = tmp_path / "store.db"
    check_store_file(path, "@bot:x", "DEV")  # none yet: a new device
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(KeyStoreError, match="not a readable key store"):
        check_store_file(path, "@bot:x", "DEV")
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(KeyStoreError, match="not a matrix-nio key store"):
        check_store_file(path, "@bot:x", "DEV")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE accounts (account, user_id, device_id, shared)")
        db.execute("INSERT INTO accounts VALUES (x'00', '@bot:x', 'DEV', 1)")
    check_store_file(path, "@bot:x", "DEV")
    with pytest.raises(KeyStoreError, match="another device"):
        check_store_file(path, "@bot:x", "OTHER")
    before = path.read_bytes()
    with pytest.raises(KeyStoreError):
        check_store_file(path, "@someone:x", "DEV")
    assert path.read_bytes() == before  # checked read-only


def test_encryption_by_mode_and_reasons():
    plain = MatrixConfig(**BASE, access_token="t")
    assert e2ee.enabled(plain) and plain.trust == "all"
    off = MatrixConfig(**BASE, access_token="t", encryption=False)
    assert not e2ee.enabled(off) and e2ee.refusal_reason(off).startswith("Encryption is turned off")
    ghost = MatrixConfig(**BASE, appservice={"registration": "reg.yaml"})
    assert not e2ee.enabled(ghost) and "ghost mode" in e2ee.refusal_reason(ghost)
    with pytest.raises(ValueError):
        MatrixConfig(**BASE, access_token="t", trust="everyone")


def test_told_text():
    assert told_text(1, True) == "A message could not be decrypted and was not sent to the stranger."
    assert told_text(3, True) == "3 messages could not be decrypted and were not sent to the stranger."
    assert told_text(1, False) == "A message could not be decrypted, so the bridge could not read it."


class Host:
    def __init__(self) -> None:
        self.told: list[tuple[str, str | None, str]] = []
        self.changed = asyncio.Event()

    async def notice(self, rid: str, thread: str | None, text: str) -> None:
        self.told.append((rid, thread, text))
        self.changed.set()

    async def until(self, n: int) -> None:
        async with asyncio.timeout(10):
            while len(self.told) < n:
                self.changed.clear()
                await self.changed.wait()


def malformed(event_id: str, root: str | None = None) -> dict:
    content: dict = {"algorithm": "m.megolm.v1.aes-sha2"}
    if root:
        content["m.relates_to"] = {"rel_type": "m.thread", "event_id": root}
    return {"type": "m.room.encrypted", "event_id": event_id, "sender": "@u:x", "origin_server_ts": 1, "content": content}


async def test_idle_rooms_are_told_once_an_hour_live_chats_every_time():
    host, rooms = Host(), RoomState(100)

    async def relay(rid, source):
        raise AssertionError("a malformed event is never relayed")

    undec = Undecryptable(host, rooms, relay, wait=0.05, thread_mode=True)
    await undec.add(None, "!idle", malformed("$1"))
    await host.until(1)
    assert host.told == [("!idle", None, told_text(1, False))]
    rooms.active.add("!idle|$root")
    await undec.add(None, "!idle", malformed("$2"))  # idle again: within the hour, not told again
    await undec.add(None, "!idle", malformed("$3", root="$root"))  # in a live thread: told, in the thread
    await host.until(2)
    assert host.told[1] == ("!idle", "$root", told_text(1, True))
    await undec.add(None, "!idle", malformed("$4", root="$root"))
    await host.until(3)  # each live message is told (a marker: $2's notice would have come before)
    assert [t[1] for t in host.told] == [None, "$root", "$root"]
    undec.close()
