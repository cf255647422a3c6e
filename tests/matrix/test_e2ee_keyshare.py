"""Room keys are shared ahead, off the send path, on a real Synapse: the Megolm session rotates every 100 messages, and no
send of the bot makes a key share (to-device request) on its way; the room's member decrypts every message, in order."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars

from bridge.events import Message
from plugins.matrix.keyshare import AHEAD
from tests.helpers import running

from .conftest import bridge_config, paired
from .e2ee import crypto_user, raw_events, second_device
from .test_e2ee_rooms import bot_knows_device, invite_and_join, undecrypted_from

UNLIMITED = {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9}
COUNT = 230  # stranger messages: the room's session rotates at least twice


@contextlib.asynccontextmanager
async def encrypted_chat(matrix, synapse, first: str | None = None):
    """A bridge whose bot chats with alice (a user with a device and keys) in an encrypted room, with no
    rate limits; `first`: a stranger message alice has read before. Yields (the running bridge, its
    Matrix platform, its recording platform, the bot's user id, alice, the room's id)."""
    bot = await matrix.account()
    alice = await crypto_user(matrix, "alice")
    cfg = bridge_config(synapse.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg, **UNLIMITED) as b:
        mx, rec, me = b.platforms["mx"], b.platforms["rec"], bot["user_id"]
        rid = await paired(b, alice, me)
        if first is not None:
            rec.send("r", Message(first))
            await alice.wait_message(rid, me, f"Stranger: {first}")
        yield b, mx, rec, me, alice, rid


def hold_key_shares(mx):
    """Holds the bot's key share (to-device) requests until `release` is set; `held` is set at the
    first. Returns (held, release, the client's own send, to put back)."""
    held, release = asyncio.Event(), asyncio.Event()
    send = mx.client.send

    async def holding_send(method, path, *args, **kwargs):
        if "/sendToDevice/m.room.encrypted/" in path:
            held.set()
            await release.wait()
        return await send(method, path, *args, **kwargs)

    mx.client.send = holding_send
    return held, release, send


async def test_room_key_rotation_is_shared_in_the_background_not_on_a_send(matrix, synapse):
    async with encrypted_chat(matrix, synapse) as (b, mx, rec, me, alice, rid):

        # The bot's request log: each request to the homeserver, and whether a room_send made it.
        sending: contextvars.ContextVar[bool] = contextvars.ContextVar("sending", default=False)
        requests: list[tuple[str, bool]] = []
        room_send, send = mx.client.room_send, mx.client.send

        async def logged_room_send(*args, **kwargs):
            token = sending.set(True)
            try:
                return await room_send(*args, **kwargs)
            finally:
                sending.reset(token)

        async def logged_send(method, path, *args, **kwargs):
            requests.append((path.partition("?")[0], sending.get()))
            return await send(method, path, *args, **kwargs)

        mx.client.room_send, mx.client.send = logged_room_send, logged_send
        try:
            for n in range(COUNT):
                rec.send("r", Message(f"key-{n}"))
                # One at a time, so the outbox never merges two into one event.
                await alice.wait_message(rid, me, lambda c, n=n: c.get("body") == f"Stranger: key-{n}")
        finally:
            mx.client.room_send, mx.client.send = room_send, send

        bodies = [e["content"]["body"] for e in alice.messages(rid, me) if e["content"]["body"].startswith("Stranger: key-")]
        assert bodies == [f"Stranger: key-{n}" for n in range(COUNT)]  # all decrypted, in order, once each
        assert not alice.undecrypted

        sends = [path for path, in_send in requests if "/send/m.room.encrypted/" in path]
        assert len(sends) == COUNT and all(in_send for path, in_send in requests if path in sends)
        key_shares = [(path, in_send) for path, in_send in requests if "/sendToDevice/m.room.encrypted/" in path]
        assert key_shares and not [path for path, in_send in key_shares if in_send], "a send shared a room key on its path"
        assert mx.crypto.keyshare.shared >= 2

        # Synapse holds the bot's events under at least three sessions (two rotations during the messages).
        stored = [e for e in await raw_events(synapse.url, alice.token, rid) if e.get("sender") == me and e["type"] == "m.room.encrypted"]
        sessions: dict[str, int] = {}
        for e in stored:
            sessions[e["content"]["session_id"]] = sessions.get(e["content"]["session_id"], 0) + 1
        assert len(sessions) >= 3, sessions
        assert max(sessions.values()) <= 100  # nio's limit: a session is never used past it
        assert min(list(sessions.values())[:-1]) >= 100 - AHEAD - 1  # replaced ahead, not much earlier


async def test_messages_go_out_with_the_current_key_while_the_next_one_is_being_shared(matrix, synapse):
    async with encrypted_chat(matrix, synapse) as (b, mx, rec, me, alice, rid):

        # The bot's key share requests are held back (the homeserver answers them only after `release`).
        held, release, send = hold_key_shares(mx)
        sent: list[str] = []

        async def relay(text: str) -> None:
            sent.append(text)
            rec.send("r", Message(text))
            await alice.wait_message(rid, me, lambda c: c.get("body") == f"Stranger: {text}")

        try:
            n = 0
            while not held.is_set():  # the session nears its end after the send of about the 90th message
                assert n < 100, "no key share started ahead"
                await relay(f"before-{n}")
                n += 1
            during = [f"during-{k}" for k in range(5)]
            for text in during:  # each arrives, decrypted, while the key share is still held
                await relay(text)
            assert not release.is_set() and mx.crypto.keyshare.tasks
            release.set()
            while mx.crypto.keyshare.tasks:
                await asyncio.sleep(0.01)
            for k in range(5):
                await relay(f"after-{k}")
        finally:
            release.set()
            mx.client.send = send

        bodies = [e["content"]["body"] for e in alice.messages(rid, me) if e["content"]["body"].startswith("Stranger: ")]
        assert bodies == [f"Stranger: {t}" for t in sent]  # in order, once each, all decrypted
        assert not alice.undecrypted
        stored = {e["event_id"]: e for e in await raw_events(synapse.url, alice.token, rid) if e.get("sender") == me}
        session_of = {e["content"]["body"].removeprefix("Stranger: "): stored[e["event_id"]]["content"]["session_id"]
                      for e in alice.messages(rid, me) if e["content"]["body"].startswith("Stranger: ")}
        old = session_of["before-0"]
        assert {session_of[t] for t in during} == {old}  # sent with the current key, not waiting for the next
        assert {session_of[f"after-{k}"] for k in range(5)} != {old} and len({session_of[f"after-{k}"] for k in range(5)}) == 1


async def test_a_member_and_a_device_that_arrive_while_a_key_is_on_its_way_get_it_too(matrix, synapse):
    carol = await crypto_user(matrix, "carol")
    async with encrypted_chat(matrix, synapse, first="s1") as (b, mx, rec, me, alice, rid):

        # The bot's key shares are held back (the homeserver answers them only after `release`).
        held, release, send = hold_key_shares(mx)
        try:
            # alice's second device drops the room's key: the next one is shared in the background, and held.
            phone = await second_device(matrix, alice)
            await asyncio.wait_for(held.wait(), 30)
            assert mx.crypto.keyshare.tasks
            # carol joins, and the bot learns her device, while that key is still on its way.
            await invite_and_join(alice, rid, carol)
            await bot_knows_device(b, carol.user_id, carol.client.device_id, carol)
            await alice.wait_for(lambda: carol.user_id in mx.client.rooms[rid].users)
            assert mx.crypto.keyshare.tasks and not release.is_set()
            release.set()
            while mx.crypto.keyshare.tasks:
                await asyncio.sleep(0.01)
        finally:
            release.set()
            mx.client.send = send

        before = {e["event_id"] for e in await raw_events(synapse.url, alice.token, rid)}
        rec.send("r", Message("s2"))
        for user in (carol, phone, alice):
            await user.wait_message(rid, me, "Stranger: s2", 30)  # decrypted by each of them
        assert not undecrypted_from(carol, me, before) and not undecrypted_from(phone, me, before)
        assert not undecrypted_from(alice, me, before)


async def test_a_key_that_reached_a_member_who_left_meanwhile_is_not_used(matrix, synapse):
    bob = await crypto_user(matrix, "bob")
    async with encrypted_chat(matrix, synapse) as (b, mx, rec, me, alice, rid):
        await invite_and_join(alice, rid, bob)
        await bot_knows_device(b, bob.user_id, bob.client.device_id, bob)
        await alice.wait_for(lambda: bob.user_id in mx.client.rooms[rid].users)
        rec.send("r", Message("s1"))
        await bob.wait_message(rid, me, "Stranger: s1")
        bobs_keys = {s.id for s in bob.client.olm.inbound_group_store}

        held, release, send = hold_key_shares(mx)
        try:
            phone = await second_device(matrix, alice)  # drops the room's key: the next one is shared, and held
            await asyncio.wait_for(held.wait(), 30)
            await bob.client.room_leave(rid)
            await alice.wait_for(lambda: bob.user_id not in mx.client.rooms[rid].users)
            assert mx.crypto.keyshare.tasks and not release.is_set()
            release.set()
            # bob's device gets the key that was on its way (to-device messages know no rooms).
            await bob.wait_for(lambda: {s.id for s in bob.client.olm.inbound_group_store} - bobs_keys, 30)
            while mx.crypto.keyshare.tasks:
                await asyncio.sleep(0.01)
        finally:
            release.set()
            mx.client.send = send

        rec.send("r", Message("s2"))
        for user in (alice, phone):
            await user.wait_message(rid, me, "Stranger: s2", 30)
        stored = [e for e in await raw_events(synapse.url, alice.token, rid) if e.get("sender") == me and e["type"] == "m.room.encrypted"]
        s2 = next(e for e in alice.messages(rid, me) if e["content"]["body"] == "Stranger: s2")
        session = next(e["content"]["session_id"] for e in stored if e["event_id"] == s2["event_id"])
        assert session not in {s.id for s in bob.client.olm.inbound_group_store}  # bob, gone, cannot read it


async def test_a_device_whose_key_request_failed_gets_the_current_key_before_the_next_message(matrix, synapse):
    bob = await crypto_user(matrix, "bob")
    async with encrypted_chat(matrix, synapse, first="s1") as (b, mx, rec, me, alice, rid):

        # The bot's first to-device request for bob's device times out (it never reaches the homeserver): the
        # share that gives the room's next key to bob ends without him, and nio marks the key shared all the same.
        send, failed = mx.client.send, asyncio.Event()

        async def failing_send(method, path, data=None, *args, **kwargs):
            if "/sendToDevice/m.room.encrypted/" in path and bob.client.device_id in (data or "") and not failed.is_set():
                failed.set()
                raise asyncio.TimeoutError
            return await send(method, path, data, *args, **kwargs)

        mx.client.send = failing_send
        try:
            await invite_and_join(alice, rid, bob)
            await bot_knows_device(b, bob.user_id, bob.client.device_id, bob)
            await alice.wait_for(lambda: bob.user_id in mx.client.rooms[rid].users)
            await asyncio.wait_for(failed.wait(), 30)
            async with asyncio.timeout(30):  # that share is over
                while mx.crypto.keyshare.tasks or rid in mx.client.sharing_session:
                    await asyncio.sleep(0.01)
            session = mx.client.olm.outbound_group_sessions[rid]
            assert session.shared and (bob.user_id, bob.client.device_id) not in session.users_shared_with
        finally:
            mx.client.send = send

        before = {e["event_id"] for e in await raw_events(synapse.url, alice.token, rid)}
        rec.send("r", Message("s2"))
        for user in (bob, alice):
            await user.wait_message(rid, me, "Stranger: s2", 30)  # decrypted by each of them
        assert not undecrypted_from(bob, me, before) and not undecrypted_from(alice, me, before)
        assert mx.client.olm.outbound_group_sessions[rid] is session  # the same key, given to bob, not a new one
        assert (bob.user_id, bob.client.device_id) in session.users_shared_with and mx.crypto.keyshare.topped_up >= 1
