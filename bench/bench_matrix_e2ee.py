"""What end-to-end encryption adds to the Matrix platform, on a real Synapse: an encrypted and a plain room side by
side in one run (sync response in → decrypted and delivered on the other side of the hub; hub → encrypted send
request), and the memory of an encrypted room next to a plain one."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import tempfile
import time
import tracemalloc
from pathlib import Path

from nio import SyncResponse

from bench.common import emit, percentile, rss_bytes
from bridge.events import Connected, Message, Start
from tests.helpers import running
from tests.matrix.conftest import Matrix, bridge_config, paired
from tests.matrix.e2ee import crypto_user
from tests.matrix.synapse import Synapse

SAMPLES = int(os.environ.get("BENCH_E2EE_SAMPLES", "300"))  # per room and direction
GAP = 0.02  # seconds between two messages (the rooms take turns)
ROOMS = 12  # rooms of each kind for the memory figure
TOKEN = re.compile(r"\b([ep]-(?:in|out)-\d+)\b")
UNLIMITED = {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9}


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


async def latency(matrix: Matrix, server: Synapse) -> None:
    bot = await matrix.account("benchbot")
    me = bot["user_id"]
    enc_user = await crypto_user(matrix, "enc")
    plain_user = await crypto_user(matrix, "plain")
    cfg = bridge_config(server.url, bot, allowed_inviters=[":localhost"])
    async with running(cfg, **UNLIMITED) as b:
        mx, rec = b.platforms["mx"], b.platforms["rec"]
        enc_room = await paired(b, enc_user, me, rec_room="e")
        plain_user_room = await plain_user.create_room([me], encrypted=False)
        await plain_user.wait_message(plain_user_room, me, lambda c: "!stranger start" in c.get("body", ""))
        await plain_user.send(plain_user_room, "!stranger start")
        await plain_user.wait_message(plain_user_room, me, lambda c: "Looking for someone" in c.get("body", ""))
        rec.send("p", Start())
        await rec.wait_for("p", Connected, timeout=20)
        assert mx.client.rooms[enc_room].encrypted and not mx.client.rooms[plain_user_room].encrypted

        # Inbound: stamped when nio starts on the /sync answer (decryption included), until the peer has it.
        handed: dict[str, float] = {}
        in_nio: dict[str, float] = {}  # seconds nio spent on the token's /sync answer (decryption included)
        arrived: dict[str, float] = {}
        receive = mx.client.receive_response

        async def timed_receive(resp):
            began = time.perf_counter()
            await receive(resp)
            took = time.perf_counter() - began
            if isinstance(resp, SyncResponse):
                for info in resp.rooms.join.values():
                    for e in info.timeline.events:
                        for tok in tokens(str((getattr(e, "source", {}) or {}).get("content", {}).get("body", ""))):
                            handed.setdefault(tok, began)
                            in_nio.setdefault(tok, took)

        mx.client.receive_response = timed_receive
        deliver = rec.deliver

        async def timed_deliver(room, event):
            if isinstance(event, Message):
                for tok in tokens(event.text):
                    arrived.setdefault(tok, time.perf_counter())
            await deliver(room, event)

        rec.deliver = timed_deliver
        # Outbound: from the platform's deliver (hub → Matrix) to the send request (encryption included).
        delivered: dict[str, float] = {}
        requested: dict[str, float] = {}
        by_txn: dict[str, str] = {}
        mx_deliver = mx.deliver

        async def timed_mx_deliver(room, event):
            if isinstance(event, Message):
                for tok in tokens(event.text):
                    delivered.setdefault(tok, time.perf_counter())
            await mx_deliver(room, event)

        mx.deliver = timed_mx_deliver
        room_send = mx.client.room_send

        async def mapped_room_send(room_id, message_type, content, tx_id=None, **kw):
            for tok in tokens(str(content.get("body", ""))):
                by_txn[str(tx_id)] = tok
            return await room_send(room_id, message_type, content, tx_id=tx_id, **kw)

        mx.client.room_send = mapped_room_send
        send = mx.client.send

        async def timed_send(method, path, data=None, *a, **kw):
            if "/send/" in path:
                txn = path.rsplit("/", 1)[-1].partition("?")[0]
                tok = by_txn.get(txn)
                if tok is not None:
                    requested.setdefault(tok, time.perf_counter())
            return await send(method, path, data, *a, **kw)

        mx.client.send = timed_send

        for n in range(-5, SAMPLES):  # the first five of each kind warm up (key sharing): not counted
            await enc_user.send(enc_room, f"e-in-{n}")
            await asyncio.sleep(GAP)
            await plain_user.send(plain_user_room, f"p-in-{n}")
            await asyncio.sleep(GAP)
            rec.send("e", Message(f"e-out-{n}"))
            await asyncio.sleep(GAP)
            rec.send("p", Message(f"p-out-{n}"))
            await asyncio.sleep(GAP)
        wanted = {f"{k}-{d}-{n}" for k in "ep" for d in ("in", "out") for n in range(SAMPLES)}
        deadline = time.monotonic() + 60
        while not wanted <= (set(arrived) | set(requested)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        mx.client.send, mx.client.room_send, mx.client.receive_response = send, room_send, receive
        mx.deliver, rec.deliver = mx_deliver, deliver

    ms = 1000.0
    figures: dict[str, list[float]] = {}
    for kind in "ep":
        figures[f"{kind}-in"] = [arrived[t] - handed[t] for t in wanted if t.startswith(f"{kind}-in") and t in arrived and t in handed]
        figures[f"{kind}-out"] = [requested[t] - delivered[t] for t in wanted if t.startswith(f"{kind}-out") and t in requested and t in delivered]
    for direction, path in (("inbound", "sync answer → nio (decrypts) → core → hub → peer deliver"),
                            ("outbound", "hub → Matrix deliver → outbox → nio (encrypts) → send request")):
        d = "in" if direction == "inbound" else "out"
        enc, plain = figures[f"e-{d}"], figures[f"p-{d}"]
        emit(f"matrix_e2ee.{direction}_encrypted_p99", percentile(enc, 99) * ms, "ms", samples=len(enc), lost=SAMPLES - len(enc), path=path)
        emit(f"matrix_e2ee.{direction}_plain_p99", percentile(plain, 99) * ms, "ms", samples=len(plain), lost=SAMPLES - len(plain), path=path)
        if d == "in":
            nio_enc = [in_nio[t] for t in wanted if t.startswith("e-in") and t in in_nio]
            nio_plain = [in_nio[t] for t in wanted if t.startswith("p-in") and t in in_nio]
            emit("matrix_e2ee.inbound_nio_sync_handling_p99", percentile(nio_enc, 99) * ms, "ms",
                 plain_p99=round(percentile(nio_plain, 99) * ms, 3), note="of the inbound figure: nio's own handling of the /sync answer (decryption, its SQLite store)")
        emit(f"matrix_e2ee.{direction}_added_p99", (percentile(enc, 99) - percentile(plain, 99)) * ms, "ms", target="<= 2",
             p95_added=round((percentile(enc, 95) - percentile(plain, 95)) * ms, 3),
             median_added=round((percentile(enc, 50) - percentile(plain, 50)) * ms, 3),
             note="encrypted room minus plain room, same run; a Megolm key rotates every 100 messages (its share to "
                  "every device is a homeserver round trip before that message), which is 1 % of the samples")


async def memory(matrix: Matrix, server: Synapse) -> None:
    bot = await matrix.account("membot")
    me = bot["user_id"]
    owner = await crypto_user(matrix, "owner")
    cfg = bridge_config(server.url, bot, allowed_inviters=[":localhost"], max_sessions_per_user=100)
    async with running(cfg, **UNLIMITED) as b:
        rec = b.platforms["rec"]
        used: dict[bool, tuple[int, int]] = {}
        for encrypted in (False, True):
            gc.collect()
            tracemalloc.start()
            heap, rss = tracemalloc.get_traced_memory()[0], rss_bytes()
            for i in range(ROOMS):
                rid = await owner.create_room([me], encrypted=encrypted)
                await owner.wait_message(rid, me, lambda c: "!stranger start" in c.get("body", ""))
                await owner.send(rid, "!stranger start")
                await owner.wait_message(rid, me, lambda c: "Looking for someone" in c.get("body", ""))
                room = f"m{encrypted}{i}"
                rec.send(room, Start())
                await rec.wait_for(room, Connected, timeout=20)
                await owner.send(rid, f"hello {i}")  # one message each way: the room's keys are in use
                await rec.wait_for(room, lambda e: isinstance(e, Message) and e.text == f"hello {i}", timeout=20)
                rec.send(room, Message(f"back {i}"))
                await owner.wait_message(rid, me, lambda c, i=i: c.get("body") == f"Stranger: back {i}")
            gc.collect()
            used[encrypted] = (tracemalloc.get_traced_memory()[0] - heap, rss_bytes() - rss)
            tracemalloc.stop()
    for encrypted, label in ((True, "encrypted"), (False, "plain")):
        emit(f"matrix_e2ee.memory_per_{label}_room", used[encrypted][0] / ROOMS / 1024, "KB", rooms=ROOMS,
             rss_per_room_kb=round(used[encrypted][1] / ROOMS / 1024, 1),
             note="Python heap per live room (chat, one message each way); vodozemac's native memory is in rss only")
    emit("matrix_e2ee.memory_added_per_encrypted_room", (used[True][0] - used[False][0]) / ROOMS / 1024, "KB", rooms=ROOMS,
         note="upper bound: the room owner's matrix-nio client runs in this process too, its own room keys included")


async def main() -> None:
    logging.disable(logging.WARNING)  # nio warns about every undecryptable history event of the test users
    with tempfile.TemporaryDirectory(prefix="sb-bench-e2ee-") as tmp:
        server = Synapse(Path(tmp) / "hs")
        await asyncio.to_thread(server.start)
        matrix = Matrix(server)
        try:
            await latency(matrix, server)
            await memory(matrix, server)
        finally:
            await matrix.close()
            server.kill()


if __name__ == "__main__":
    asyncio.run(main())
