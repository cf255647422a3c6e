"""Room keys shared ahead of time: a room's next Megolm session goes to its members' devices in the background, off the send path."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import uuid4

from nio import AsyncClient, ShareGroupSessionResponse
from nio.api import Api

from bridge.dedupe import SeenIds

__all__ = ["AGE_MARGIN", "AHEAD", "KeyShare", "needs_share"]

log = logging.getLogger(__name__)

# A session this close to its age limit (nio: 7 days) is replaced ahead, so an idle room's next
# message does not find it expired.
AGE_MARGIN = timedelta(hours=1)
# The next session is shared this many messages before nio's limit (100): the current one stays in
# use meanwhile, so a burst of this many messages does not catch up with the share.
AHEAD = 10
# Rounds of sharing with members and devices that arrived while the key was on its way.
LATE_ROUNDS = 3
# Seconds before a device the room's key did not reach is tried again (claiming a session for one
# with no one-time keys left gives nothing; so is not asked on every message).
RETRY_UNREACHED = 30.0


def needs_share(client: AsyncClient, rid: str) -> bool:
    """True when the room's key should be shared now: it has none shared, or its session is near its end.

    nio shares inside `room_send` when the room has no shared session (none yet, or it was dropped
    because a member's devices or the members changed) or its session is used up (100 messages, or
    its age). Here the next session is shared `AHEAD` messages (or `AGE_MARGIN`) before that.
    """
    olm = client.olm
    room = client.rooms.get(rid)
    if olm is None or room is None or not room.encrypted or not room.members_synced or rid in client.sharing_session:
        return False
    session = olm.outbound_group_sessions.get(rid)
    if session is None or not session.shared:
        return True
    return session.message_count >= session.max_messages - AHEAD or datetime.now() - session.creation_time >= session.max_age - AGE_MARGIN


class KeyShare:
    """Shares a room's next group session in a background task, at most one per room and `parallel` in all.

    Without it the message that finds the session used up (every 100th) or dropped (a member's new
    device) waits while nio sends the new key to every device: to-device requests through the
    homeserver. Here the next session is made and sent to the members' devices while the current
    one stays in use, and replaces it once every device has it; so a message is only ever encrypted.
    A send that finds no usable session (dropped, or used up during a long burst) waits for the
    share in flight inside nio (`sharing_session`), as nio's own shares make it: the room's messages
    keep their order and each is encrypted with a key its members have. A failed share is left to
    nio: the next send shares on its own path, as without this class.
    """

    def __init__(self, parallel: int = 4) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.slots = asyncio.Semaphore(parallel)
        self.shared = 0  # background shares done, for tests and status
        self.topped_up = 0  # devices given a room's current key after it was shared (see top_up)
        self._tried: SeenIds[tuple[str, str], float] = SeenIds(4096)  # device -> when it may be tried again

    def after_send(self, client: AsyncClient, rid: str) -> None:
        """A message went out in the room: share the next key now if the session is near its end."""
        self._start(client, rid)

    def after_sync(self, client: AsyncClient, rids: Iterable[str]) -> None:
        """A sync batch was handled (members and devices may have changed): share ahead for these rooms."""
        for rid in rids:
            self._start(client, rid)

    async def top_up(self, client: AsyncClient, rid: str) -> None:
        """Before a send: the room's current key goes to the members' devices it missed, so they read what follows.

        nio marks a session shared once its share is over even when a device did not get it: one whose keys
        were fetched while the key was on its way (nio drops only a shared session when a device comes, and
        its share on the send path makes no late rounds), one whose to-device request failed, or one that had
        no Olm session. Such a device would not read the room until the session rotates (100 messages). It
        gets the current key now (from its current index on: nothing said before); a device that still has
        no Olm session is tried again after RETRY_UNREACHED seconds.
        """
        olm, room = client.olm, client.rooms.get(rid)
        if olm is None or room is None or not room.encrypted or rid in client.sharing_session:
            return
        session = olm.outbound_group_sessions.get(rid)
        if session is None or not session.shared:
            return  # the send shares it (nio), or a share ahead is on its way
        users = list(room.users)
        unreached = _unreached(client, users, session)
        if not unreached:
            return
        now = time.monotonic()
        due = {pair for pair in unreached if (self._tried.get(pair) or 0.0) <= now}
        if not due:
            return
        for pair in due:
            self._tried.remember(pair, now + RETRY_UNREACHED)
        store = olm.session_store
        claim: dict[str, list[str]] = {}
        for user, device in due:
            if not store.get(client.device_store[user][device].curve25519):
                claim.setdefault(user, []).append(device)
        if claim:
            await client.keys_claim(claim)
        if olm.outbound_group_sessions.get(rid) is not session or rid in client.sharing_session:
            return  # replaced meanwhile: the new one goes to every device
        session.shared = False  # nio's share then uses this session (not a new one), for the devices lacking it only
        try:
            requests = _key_requests(client, rid, users)
        finally:
            session.shared = True
        reached = await _answers(requests)
        session.users_shared_with.update(reached)
        self.topped_up += len(reached)
        log.info("matrix: a room's current key went to %d device(s) it had missed", len(reached))

    def close(self) -> None:
        """Cancel the shares in flight (the platform stops or logs in again); nio's next send shares itself."""
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()

    def _start(self, client: AsyncClient, rid: str) -> None:
        if rid in self.tasks or not needs_share(client, rid):
            return
        task = asyncio.get_running_loop().create_task(self._run(client, rid))
        self.tasks[rid] = task
        task.add_done_callback(lambda done, rid=rid: self.tasks.pop(rid, None) if self.tasks.get(rid) is done else None)

    async def _run(self, client: AsyncClient, rid: str) -> None:
        async with self.slots:
            if not needs_share(client, rid):  # a send shared it meanwhile
                return
            try:
                await self._share(client, rid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the homeserver is away: the next send shares on its path
                log.warning("matrix: sharing a room key ahead failed (%s); the next message shares it", type(exc).__name__)
                return
            self.shared += 1

    async def _share(self, client: AsyncClient, rid: str) -> None:
        """nio's `AsyncClient.share_group_session`, except that the current session stays in use meanwhile,
        and that members and devices that arrive while the key is on its way get it too before it is used.

        Uses nio's private `AsyncClient._send`, like `plugins.matrix.sender.leave_with_reason`, so the
        answers update nio's state as its own share does.
        """
        olm = client.olm
        assert olm is not None
        done = client.sharing_session[rid] = asyncio.Event()  # a send with no usable session waits for this
        try:
            # The devices known before the Olm sessions are claimed: one that appears during the claim
            # (a key query answered meanwhile) has no session yet, and counts as a late arrival below.
            considered = _devices(client, client.rooms[rid].users)
            missing = client.get_missing_sessions(rid)
            if missing:
                await client.keys_claim(missing)
            current = olm.outbound_group_sessions.pop(rid, None)
            keep = current if current is not None and current.shared and not current.expired else None
            if current is not None and keep is None:
                olm.outbound_group_sessions[rid] = current  # unshared (a share left half done): nio goes on with it
            users = list(client.rooms[rid].users)
            try:
                requests = _key_requests(client, rid, users)
            except BaseException:
                if keep is not None:
                    olm.outbound_group_sessions[rid] = keep
                raise
            new = olm.outbound_group_sessions[rid]
            if keep is not None:
                olm.outbound_group_sessions[rid] = keep  # sends go on with the current key until every device has the new one
                known = set(keep.users_shared_with)
            shared_with = await _answers(requests)
            if keep is not None:
                keep.users_shared_with.intersection_update(known)  # nio's answer handler noted the new key's devices on it
                if olm.outbound_group_sessions.get(rid) is not keep:
                    return  # dropped meanwhile (a member's devices changed): nio's next send shares anew
                olm.outbound_group_sessions[rid] = new
            new.users_shared_with.update(shared_with)
            # nio drops a shared session when a member or device comes or goes, but keeps one not yet
            # shared: a member who joined (or a device that appeared) while this key was on its way
            # would never get it, and could not read what it encrypts. They get it now; a member who
            # left meanwhile had the key sent to them: it is dropped, and the next send makes another.
            for round_ in range(LATE_ROUNDS + 1):
                users = list(client.rooms[rid].users)
                if {user for user, _ in considered} - set(users):
                    if olm.outbound_group_sessions.get(rid) is new:
                        del olm.outbound_group_sessions[rid]
                    return
                late = _devices(client, users) - considered
                if not late:
                    break
                if round_ == LATE_ROUNDS or olm.outbound_group_sessions.get(rid) is not new:
                    return  # still changing (or replaced): left unshared, nio's next send shares it
                considered |= late
                missing = client.get_missing_sessions(rid)
                if missing:
                    await client.keys_claim(missing)
                new.users_shared_with.update(await _answers(_key_requests(client, rid, users)))
            new.shared = True  # as nio marks it, also when there was nobody to share with
        finally:
            client.sharing_session.pop(rid, None)
            done.set()


def _devices(client: AsyncClient, users: Iterable[str]) -> set[tuple[str, str]]:
    """The (user, device) pairs nio knows as active for these users."""
    store = client.device_store
    return {(user, device.id) for user in users for device in store.active_user_devices(user)}


def _unreached(client: AsyncClient, users: Iterable[str], session) -> set[tuple[str, str]]:
    """The members' active devices (ours aside) that `session` was neither shared with nor set to skip."""
    own = (client.user_id, client.device_id)
    done = session.users_shared_with | session.users_ignored
    return {pair for pair in _devices(client, users) if pair != own and pair not in done}


def _key_requests(client: AsyncClient, rid: str, users: list[str]) -> list:
    """The to-device requests (not yet sent) that give the room's unshared session to those of `users`' devices that lack it."""
    olm = client.olm
    assert olm is not None
    requests = []
    try:
        # ignore_unverified_devices, as for sends: the trust policy (plugins.matrix.crypto) decided.
        for sharing_with, messages in olm.share_group_session_parallel(rid, users, ignore_unverified_devices=True):
            method, path, data = Api.to_device(client.access_token, "m.room.encrypted", messages, uuid4())
            requests.append(client._send(ShareGroupSessionResponse, method, path, data, response_data=(rid, sharing_with)))
    except BaseException:
        for request in requests:
            request.close()  # never sent
        raise
    return requests


async def _answers(requests: list) -> set[tuple[str, str]]:
    """Sends the requests together; the devices that got the key."""
    shared_with: set[tuple[str, str]] = set()
    for resp in await asyncio.gather(*requests, return_exceptions=True):
        if isinstance(resp, ShareGroupSessionResponse):
            shared_with.update(resp.users_shared_with)
    return shared_with
