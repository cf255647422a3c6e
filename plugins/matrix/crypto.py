"""End-to-end encryption of the bot account (sync mode): the nio key store, trust policy, key housekeeping, sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from nio import AsyncClient, KeysQueryResponse, SyncResponse, WhoamiResponse
from nio.responses import ErrorResponse
from nio.rooms import MatrixRoom

from bridge.abc import CredentialsError
from bridge.dedupe import SeenIds

from .config import MatrixConfig
from .e2ee import enabled
from .keyshare import KeyShare
from .rooms import RoomState, SessionRoom
from .sender import Sent, encryption_state
from .sync import why
from .undecryptable import Relay, Undecryptable

__all__ = ["Crypto", "CryptoHost", "KeyStoreError", "check_store_file"]

log = logging.getLogger(__name__)


class KeyStoreError(CredentialsError):
    """The key store cannot be used (unreadable, or another device's): start-up fails (exit 2), the file is kept."""


class CryptoHost(Protocol):
    """What the encryption needs from the platform: notices in rooms."""

    async def notice(self, rid: str, thread: str | None, text: str) -> None: ...


class Crypto:
    """The bot's device: opens and checks the key store, uploads and fetches keys, applies the trust policy.

    nio decrypts the timeline in `/sync`, shares the room key before an encrypted send and rotates
    it when members or their devices change; this class runs the key requests nio leaves to its
    caller after every batch (upload, device query, claim, queued to-device messages), and has the
    next room key shared ahead, in the background (`plugins.matrix.keyshare`), so a message does not
    wait for a key share.
    """

    def __init__(self, host: CryptoHost, cfg: MatrixConfig, rooms: RoomState, relay: Relay) -> None:
        self.host = host
        self.cfg = cfg
        self.rooms = rooms
        self.undecryptable = Undecryptable(host, rooms, relay, wait=cfg.undecryptable_wait, thread_mode=cfg.mode == "thread")
        self.client: AsyncClient | None = None
        # Rooms whose encryption state was asked of the server this run (one forgotten is asked again),
        # and the (user, device) pairs announced under trust = "tofu": bounded like the room caches.
        self.checked: SeenIds[str, None] = SeenIds(cfg.remember_rooms)
        self.warned: SeenIds[tuple[str, str], None] = SeenIds(cfg.remember_rooms)
        self.keyshare = KeyShare()

    @classmethod
    def for_platform(cls, host: CryptoHost, cfg: MatrixConfig, rooms: RoomState, relay: Relay) -> Crypto | None:
        """The platform's encryption, or None (ghost mode, `encryption = false`, or no matrix-nio[e2e])."""
        if enabled(cfg):
            return cls(host, cfg, rooms, relay)
        if cfg.encryption and cfg.appservice is None:
            log.warning("matrix: matrix-nio[e2e] is not installed: encrypted rooms are refused")
        return None

    # ---- the key store -----------------------------------------------------------------------

    async def open(self, client: AsyncClient) -> None:
        """Load (or create) this device's key store and check that it matches the homeserver's keys."""
        self.client = client
        self.checked = SeenIds(self.cfg.remember_rooms)
        self.keyshare.close()  # a new login: shares of the old client are void
        if not client.device_id:
            client.device_id = await self._device_of_token(client)
        directory = Path(self.cfg.crypto_store)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyStoreError(f"cannot create the Matrix key store directory {directory} ({exc.strerror or exc}); set crypto_store") from exc
        path = directory / f"{client.user_id}_{client.device_id}.db"
        check_store_file(path, client.user_id, client.device_id)
        others = sorted(p.name for p in directory.glob(f"{client.user_id}_*.db") if p != path)
        if others and not path.exists():
            log.warning("matrix: the key store has no keys for device %s (only for others); this device starts with new keys", client.device_id)
        client.store_path = str(directory)
        try:
            client.load_store()
        except Exception as exc:  # peewee / sqlite errors: the file is not overwritten
            raise KeyStoreError(f"the Matrix key store {path} cannot be opened ({type(exc).__name__}: {exc}); it was left as it is") from exc
        path.chmod(0o600)
        await self._check_own_keys(client, path)

    async def _device_of_token(self, client: AsyncClient) -> str:
        resp = await client.whoami()
        if not isinstance(resp, WhoamiResponse) or not resp.device_id:
            raise CredentialsError(f"the homeserver did not say which device the access token of {self.cfg.user_id} is; set device_id")
        return resp.device_id

    async def _check_own_keys(self, client: AsyncClient, path: Path) -> None:
        """The homeserver's keys for our device must be the store's: else the store is another installation's."""
        assert client.olm is not None
        for attempt in range(5):
            client.olm.users_for_key_query.add(client.user_id)  # nio asks only for users it was told to
            try:
                resp = await client.keys_query()
            except Exception as exc:  # noqa: BLE001 - the homeserver is away: the sync loop waits for it
                log.warning("matrix: could not fetch our device keys (%s)", type(exc).__name__)
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if isinstance(resp, KeysQueryResponse):
                break
            log.warning("matrix: could not fetch our device keys (%s)", why(resp))
            await asyncio.sleep(0.5 * (attempt + 1))
        else:
            log.warning("matrix: our device keys could not be compared with the homeserver's; starting without that check")
            return
        mine = (resp.device_keys.get(client.user_id) or {}).get(client.device_id)
        if not mine:
            return  # a new device: nio uploads its keys
        published = (mine.get("keys") or {}).get(f"ed25519:{client.device_id}")
        ours = client.olm.account.identity_keys["ed25519"]
        if published and published != ours:
            raise KeyStoreError(
                f"the homeserver holds other encryption keys for device {client.device_id} of {client.user_id} than "
                f"the key store {path} (the store is another installation's, or this device's store was lost); "
                "the store was left as it is: log in as a new device (another device_id) or restore the right store"
            )

    # ---- after each sync batch ---------------------------------------------------------------

    async def after_sync(self, resp: SyncResponse) -> None:
        """Upload our keys, fetch changed devices (trust policy), claim sessions, send queued to-device messages.

        Messages waiting for their key are tried again when the batch brought to-device events
        (room keys come that way).
        """
        client = self.client
        assert client is not None
        try:
            if client.should_upload_keys:
                uploaded = await client.keys_upload()
                if isinstance(uploaded, ErrorResponse):  # e.g. a one-time key id the server has with other content
                    log.error("matrix: the homeserver refused our key upload (%s)", why(uploaded))
            if client.should_query_keys:
                known = self._known_devices(client)
                queried = await client.keys_query()
                if isinstance(queried, KeysQueryResponse):
                    await self._apply_trust(client, queried, known)
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
            await client.send_to_device_messages()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the homeserver is away; retried after the next batch
            log.warning("matrix: key housekeeping failed (%s); retrying after the next sync", type(exc).__name__)
        # Members, their devices, or the trust may have changed a room's key: shared now, not on a send.
        self.keyshare.after_sync(client, sorted({SessionRoom.parse(sid).room for sid in self.rooms.active}))
        if resp.to_device_events:
            await self.undecryptable.retry(client)

    async def before_send(self, client: AsyncClient, rid: str) -> None:
        """An event is about to be encrypted for the room: every member's device has the key it uses."""
        try:
            await self.keyshare.top_up(client, rid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the homeserver is away: the send goes on, and it is tried again
            log.warning("matrix: giving a room key to a device it missed failed (%s)", type(exc).__name__)

    def sent(self, client: AsyncClient, rid: str) -> None:
        """An event went out in the room: when it used the room key up, the next one is shared now, in the background."""
        self.keyshare.after_send(client, rid)

    def close(self) -> None:
        """The platform stops: timers and background key shares are cancelled."""
        self.undecryptable.close()
        self.keyshare.close()

    async def on_event(self, rid: str, ev: dict[str, Any], *, history: bool) -> None:
        """`m.room.encryption` (the chat goes on, encrypted) or an `m.room.encrypted` event nio could not decrypt."""
        if history:
            return
        if ev.get("type") == "m.room.encryption":
            if any(SessionRoom.parse(sid).room == rid for sid in self.rooms.active):
                log.info("matrix: a session room turned on encryption; its chat goes on encrypted")
                await self.host.notice(rid, None, "This room turned on encryption; the chat goes on, encrypted.")
            return
        assert self.client is not None
        await self.undecryptable.add(self.client, rid, ev)

    def _known_devices(self, client: AsyncClient) -> dict[str, set[str]]:
        return {user: {d.id for d in client.device_store.active_user_devices(user)} for user in client.users_for_key_query}

    async def _apply_trust(self, client: AsyncClient, resp: KeysQueryResponse, known: dict[str, set[str]]) -> None:
        """trust = "tofu": a user's first devices are verified; a device that appears later is announced in their chats."""
        if self.cfg.trust != "tofu":
            return
        for user, devices in (resp.changed or {}).items():
            if user == client.user_id:
                continue
            before = known.get(user, set())
            for device_id, device in devices.items():
                if device.deleted or client.olm.is_device_verified(device) or client.olm.is_device_ignored(device):
                    continue
                if not before:
                    client.verify_device(device)  # first seen: trusted on first use
                    continue
                client.ignore_device(device)  # encrypted for, but never verified
                await self._warn_new_device(client, user, device_id)

    async def _warn_new_device(self, client: AsyncClient, user: str, device_id: str) -> None:
        if not self.warned.first_time((user, device_id)):
            return
        text = (
            f"A new device ({device_id}) of {user} appeared, one this bridge has not seen before (trust = tofu). "
            "Messages from the stranger are encrypted for it too from now on; if it is not theirs, stop the chat."
        )
        for sid in sorted(self.rooms.active):
            where = SessionRoom.parse(sid)
            room = client.rooms.get(where.room)
            if room is not None and room.encrypted and user in room.users:
                await self.host.notice(where.room, where.root, text)

    # ---- before each send --------------------------------------------------------------------

    async def prepare_send(self, client: AsyncClient, rid: str) -> Sent | None:
        """Make nio know the room and whether it is encrypted (asked of the server once per run); a failure as Sent."""
        if rid in self.checked and rid in client.rooms:
            return None
        encrypted = await encryption_state(client, rid)
        if isinstance(encrypted, Sent):
            return encrypted
        room = client.rooms.get(rid)
        if room is None:  # joined before the sync that shows the room: nio fetches its members on send
            room = client.rooms[rid] = MatrixRoom(rid, client.user_id, encrypted)
        if encrypted and not room.encrypted:
            room.encrypted = True
        if encrypted:
            client.encrypted_rooms.add(rid)
        self.checked.remember(rid)
        return None


def check_store_file(path: Path, user_id: str, device_id: str) -> None:
    """Refuse a key store file that is not a nio store, or holds another account or device (it is never touched)."""
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            rows = db.execute("SELECT user_id, device_id FROM accounts").fetchall() if "accounts" in tables else []
    except sqlite3.Error as exc:
        raise KeyStoreError(f"the Matrix key store {path} is not a readable key store ({exc}); it was left as it is") from exc
    if "accounts" not in tables:
        raise KeyStoreError(f"the Matrix key store {path} is not a matrix-nio key store (no accounts table); it was left as it is")
    foreign = [(u, d) for u, d in rows if (u, d) != (user_id, device_id)]
    if foreign:
        raise KeyStoreError(
            f"the Matrix key store {path} holds the keys of another device ({foreign[0][0]} {foreign[0][1]}), "
            f"not of {user_id} {device_id}; it was left as it is"
        )
