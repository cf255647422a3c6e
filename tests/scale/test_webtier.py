"""The web tier in Redis mode: /start on one instance, /events and actions on another, across a restart of the owner."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import signal

import aiohttp

from bridge.app import Bridge
from tests.discord.conftest import bridge_config, server
from tests.discord.util import open_chat, stranger_lines, wait_line, wait_notice
from tests.helpers import config

from .conftest import LEASE, PREFIX
from .daemon import Daemon

__all__ = ["server"]  # the fake Discord server fixture, used by name

TIMEOUT = aiohttp.ClientTimeout(total=30)


class Roaming:
    """One Omegle-protocol client id whose requests go to whichever instance the test names
    (a load balancer without sticky routing); every event it was answered, in order."""

    def __init__(self, http: aiohttp.ClientSession, name: str) -> None:
        self.http = http
        self.name = name
        self.id: str | None = None
        self.events: list[list] = []
        self.seq: int | None = None  # an acknowledging client's next sequence number

    async def start(self, url: str, *, acks: bool = False, cookie: str | None = None, **extra: str) -> None:
        query = {"firstevents": "1", "randid": "ABCDEFGH", "lang": "en", **({"ack": "0"} if acks else {}), **extra}
        headers = {"Cookie": cookie} if cookie else None
        async with self.http.get(url + "/start", params=query, headers=headers) as response:
            assert response.status == 200, await response.text()
            data = json.loads(await response.text())
        self.id = data["clientID"]
        events = data["events"]
        if acks:
            self.seq = data["next"]
            events = events[: data["next"]]
        self.events.extend(e for e in events if e[0] not in ("statusInfo", "count"))

    async def post(self, url: str, path: str, **fields: str) -> tuple[int, str]:
        async with self.http.post(url + path, data={"id": self.id, **fields}) as response:
            return response.status, await response.text()

    async def poll(self, url: str, *, show: bool = True) -> list[list] | None:
        """One /events; an acknowledging client that does not `show` an answer does not acknowledge it."""
        fields = {} if self.seq is None else {"ack": str(self.seq)}
        status, body = await self.post(url, "/events", **fields)
        assert status == 200, (self.name, status, body)
        answer = json.loads(body)
        if answer is None:
            return None
        if self.seq is not None:
            base, batch = answer["seq"], answer["events"]
            assert base <= self.seq <= base + len(batch), (base, self.seq, len(batch))
            batch = batch[self.seq - base :]  # what this page has shown already is answered again until acked
            if not show:
                return []
            self.seq = base + len(answer["events"])
        else:
            batch = answer
            assert batch, "the server answered an empty batch"
        self.events.extend(batch)
        return batch

    async def until(self, urls: list[str], test, timeout: float = 30.0, rng: random.Random | None = None) -> None:
        async with asyncio.timeout(timeout):
            while not test(self.events):
                await self.poll((rng or random).choice(urls))

    def texts(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "gotMessage"]

    def names(self) -> list[str]:
        return [e[0] for e in self.events]


async def until_metric(http: aiohttp.ClientSession, d: Daemon, series: str, value: float) -> None:
    """Wait until the daemon's /metrics shows `series` at `value`."""
    async with asyncio.timeout(30):
        while True:
            async with http.get(d.health + "/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line.startswith(series + " ") and float(line.split()[-1]) == value:
                        return
            await asyncio.sleep(0.1)


def has(name: str):
    return lambda events: any(e[0] == name for e in events)


async def two(tmp_path, redis_url: str, lease: float = 1.5) -> tuple[Daemon, Daemon]:
    a = Daemon(tmp_path, redis_url, "a", lease=lease, hub="resume_window = 60")
    b = Daemon(tmp_path, redis_url, "b", lease=lease, hub="resume_window = 60")
    await a.start()  # one after the other: two at once race on marking a fresh prefix (a store matter)
    await b.start()
    return a, b


async def paired(http, start_w: str, start_p: str, urls: list[str], rng: random.Random) -> tuple[Roaming, Roaming]:
    w, p = Roaming(http, "w"), Roaming(http, "p")
    await w.start(start_w)
    await w.until(urls, has("waiting"), rng=rng)
    await p.start(start_p)
    await asyncio.gather(w.until(urls, has("connected"), rng=rng), p.until(urls, has("connected"), rng=rng))
    return w, p


async def exchange(w: Roaming, p: Roaming, w_urls: list[str], p_urls: list[str], n: int, label: str, rng: random.Random) -> None:
    """n unique tokens each way, each sent to a random instance of its list and polled on random
    instances: each side is shown exactly the other's, in order, none twice."""
    sent = {"w": [f"{label}-w-{secrets.token_hex(3)}-{i}" for i in range(n)], "p": [f"{label}-p-{secrets.token_hex(3)}-{i}" for i in range(n)]}
    before = {"w": len(w.texts()), "p": len(p.texts())}
    for i in range(n):
        assert await w.post(rng.choice(w_urls), "/send", msg=sent["w"][i]) == (200, "win")
        assert await p.post(rng.choice(p_urls), "/send", msg=sent["p"][i]) == (200, "win")
    await asyncio.gather(
        w.until(w_urls, lambda _: len(w.texts()) >= before["w"] + n, rng=rng),
        p.until(p_urls, lambda _: len(p.texts()) >= before["p"] + n, rng=rng),
    )
    assert w.texts()[before["w"]:] == sent["p"]
    assert p.texts()[before["p"]:] == sent["w"]


async def test_start_on_a_then_events_and_send_on_b_with_a_partner_polling_both(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(10)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)  # w started on a, polls b only
            await exchange(w, p, [b.url], [a.url, b.url], 40, "cross", rng)
            await exchange(w, p, [a.url, b.url], [a.url, b.url], 40, "random", rng)  # polls alternate at random
            assert "strangerDisconnected" not in w.names() + p.names()
            assert await w.post(b.url, "/disconnect") == (200, "win")  # taken by w's owner, a
            await p.until([a.url], has("strangerDisconnected"))
            assert p.names().count("strangerDisconnected") == 1
            assert (await w.post(b.url, "/events"))[0] == 400  # w's id is dead on every instance
            assert (await w.post(a.url, "/events"))[0] == 400
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_web_client_polling_b_keeps_its_chat_when_its_owner_a_is_killed_and_restarted(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url, lease=6.0)  # the restarted a waits out its old lease
    rng = random.Random(11)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)
            await exchange(w, p, [b.url], [b.url], 10, "before", rng)
            await a.kill()
            # Restarted at once (as systemd would): the new process waits out the old lease, having
            # told the others it is coming back, so the chat is not ended meanwhile.
            restart = asyncio.create_task(a.start())
            gap_p = [f"gap-p-{secrets.token_hex(3)}-{i}" for i in range(10)]
            gap_w = [f"gap-w-{secrets.token_hex(3)}-{i}" for i in range(10)]
            for i, (token_p, token_w) in enumerate(zip(gap_p, gap_w)):
                assert await p.post(b.url, "/send", msg=token_p) == (200, "win")
                assert await w.post(b.url, "/send", msg=token_w) == (200, "win")  # into a's stream
                if i == 0:
                    assert not restart.done()  # sent while a was down
            await restart
            await asyncio.gather(
                w.until([b.url], lambda _: all(t in w.texts() for t in gap_p)),
                p.until([b.url], lambda _: all(t in p.texts() for t in gap_w)),
            )
            assert [t for t in w.texts() if t.startswith("gap-")] == gap_p  # in order, none twice
            assert [t for t in p.texts() if t.startswith("gap-")] == gap_w
            await exchange(w, p, [a.url, b.url], [a.url, b.url], 10, "after", rng)
            assert "strangerDisconnected" not in w.names() + p.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_two_pollers_of_one_id_on_a_and_b_never_get_an_event_twice(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(12)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [a.url], rng)
            twin = Roaming(http, "twin")  # the same id, polled at the same time on the other instance
            twin.id = w.id
            tokens = [f"twin-{secrets.token_hex(3)}-{i}" for i in range(60)]
            stop = asyncio.Event()

            async def keep_polling(client: Roaming, url: str) -> None:
                while not stop.is_set():
                    await client.poll(url)

            pollers = [asyncio.create_task(keep_polling(w, a.url)), asyncio.create_task(keep_polling(twin, b.url))]
            for token in tokens:
                assert await p.post(rng.choice([a.url, b.url]), "/send", msg=token) == (200, "win")
            async with asyncio.timeout(30):
                while len(w.texts()) + len(twin.texts()) < len(tokens):
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*pollers)
            got = w.texts() + twin.texts()
            assert sorted(got) == sorted(tokens)  # each once: none lost, none twice
            for seen in (w.texts(), twin.texts()):
                assert seen == [t for t in tokens if t in seen]  # each poller's share in order
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_an_acknowledging_page_roaming_between_instances_sees_everything_once_in_order(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(13)
    urls = [a.url, b.url]
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w = Roaming(http, "w")
            await w.start(a.url, acks=True)
            await w.until(urls, has("waiting"), rng=rng)
            p = Roaming(http, "p")
            await p.start(b.url)
            await w.until(urls, has("connected"), rng=rng)
            await p.until(urls, has("connected"), rng=rng)
            tokens = [f"ack-{secrets.token_hex(3)}-{i}" for i in range(40)]
            for token in tokens:
                assert await p.post(rng.choice(urls), "/send", msg=token) == (200, "win")
            async with asyncio.timeout(30):
                while len(w.texts()) < len(tokens):
                    await w.poll(rng.choice(urls), show=rng.random() < 0.6)  # answers it drops come again
            assert w.texts() == tokens
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_forged_or_unknown_id_gets_the_same_answer_on_every_instance(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(14)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, _ = await paired(http, a.url, b.url, [a.url], rng)
            assert w.id is not None
            altered = w.id[:-1] + ("A" if w.id[-1] != "A" else "B")
            for forged in (altered, secrets.token_urlsafe(24), "short", ""):
                for path in ("/events", "/send", "/typing", "/stoppedtyping", "/disconnect", "/stoplookingforcommonlikes", "/report"):
                    answers = []
                    for url in (a.url, b.url):
                        async with http.post(url + path, data={"id": forged, "msg": "x"}) as response:
                            answers.append((response.status, await response.text()))
                    assert answers[0] == answers[1] and answers[0][0] == 400, (forged, path, answers)
            p_texts_before = 0
            assert "gotMessage" not in w.names()[p_texts_before:]  # nothing forged reached the chat
            assert await w.post(b.url, "/send", msg="real") == (200, "win")  # the real id still works on b
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_web_client_whose_owner_dies_for_good_is_told_once_on_the_instance_it_polls(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(15)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)
            await exchange(w, p, [b.url], [b.url], 5, "before", rng)
            await a.kill()  # not restarted: b notices when a's lease expires
            await asyncio.gather(w.until([b.url], has("strangerDisconnected")), p.until([b.url], has("strangerDisconnected")))
            assert w.names().count("strangerDisconnected") == p.names().count("strangerDisconnected") == 1
            assert (await w.post(b.url, "/events"))[0] == 400  # the end was fetched: the id is dead
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_caps_hold_across_instances_live_ids_per_address_and_the_queue_bound_with_one_notice(tmp_path, redis_server):
    web = "max_sessions_per_address = 3\nmax_queue = 10"
    a = Daemon(tmp_path, redis_server.url, "a", hub="resume_window = 60", web=web)
    b = Daemon(tmp_path, redis_server.url, "b", hub="resume_window = 60", web=web)
    await a.start()
    await b.start()
    rng = random.Random(16)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)  # two live ids of 127.0.0.1, one on each
            third = Roaming(http, "third")
            await third.start(a.url)
            async with http.get(b.url + "/start", params={"firstevents": "1"}) as response:
                assert response.status == 429  # the fourth, on the other instance: the cap counts both
            assert await third.post(b.url, "/disconnect") == (200, "win")  # forwarded to a: one place free again
            async with asyncio.timeout(30):
                while True:
                    async with http.get(b.url + "/start", params={"firstevents": "1"}) as response:
                        if response.status == 200:
                            fourth = json.loads(await response.text())["clientID"]
                            break
                    await asyncio.sleep(0.1)
            async with http.post(a.url + "/disconnect", data={"id": fourth}) as response:
                assert response.status == 200
            # w polls nowhere while p sends 25 (w's queue holds 10): the first ones, one notice, no more.
            tokens = [f"bound-{secrets.token_hex(3)}-{i}" for i in range(25)]
            for token in tokens:
                assert await p.post(b.url, "/send", msg=token) == (200, "win")
            marker = "after-the-bound"
            # Each refused event is counted by w's owner: once 15 are, all 25 were handled (10 fit).
            await until_metric(http, a, 'stranger_bridge_web_dropped_total{platform="web",reason="queue_full"}', 15)
            got = await w.poll(b.url)
            assert got is not None
            shown = [e[1] for e in got if e[0] == "gotMessage"]
            notices = [e for e in got if e[0] == "serverMessage" and "Too much at once" in e[1]]
            assert shown == tokens[: len(shown)] and 0 < len(shown) < len(tokens)
            assert len(notices) == 1
            assert await p.post(b.url, "/send", msg=marker) == (200, "win")
            await w.until([a.url, b.url], lambda _: marker in w.texts(), rng=rng)
            assert w.texts()[len(shown):] == [marker]  # nothing of the dropped ones came after
            assert sum("Too much at once" in str(e) for e in w.events) == 1
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_rolling_restart_of_the_owner_keeps_its_web_clients_chat(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(17)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [b.url], rng)
            await exchange(w, p, [a.url, b.url], [b.url], 10, "before", rng)
            assert await a.stop() == 0  # SIGTERM (an upgrade): w's chat is left for the next run, nobody told
            gap = [f"stopped-{secrets.token_hex(3)}-{i}" for i in range(10)]
            for token in gap:
                assert await p.post(b.url, "/send", msg=token) == (200, "win")
            await a.start()
            await w.until([b.url, a.url], lambda _: all(t in w.texts() for t in gap), rng=rng)
            assert [t for t in w.texts() if t.startswith("stopped-")] == gap
            await exchange(w, p, [a.url, b.url], [a.url, b.url], 10, "after", rng)
            assert "strangerDisconnected" not in w.names() + p.names()
            assert not any(e[0] == "serverMessage" for e in w.events + p.events)  # nobody was told anything
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_discord_thread_chats_with_a_web_client_started_on_a_and_served_by_b(tmp_path, redis_server, server):
    data = bridge_config(server)
    del data["platforms"]["rec"]
    data["bridge"] = {"store": redis_server.url, "store_prefix": PREFIX, "instance": "dc1", "instance_lease": LEASE}
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(18)
    try:
        async with Bridge(config(data)), aiohttp.ClientSession(timeout=TIMEOUT) as http:
            alice = server.add_user("alice")
            tid, _ = await open_chat(server, alice)
            await wait_notice(server, tid, "Looking for someone")
            w = Roaming(http, "w")
            await w.start(a.url)
            await w.until([b.url], has("connected"), rng=rng)
            await wait_notice(server, tid, "You're now chatting")
            from_web = [f"web-{secrets.token_hex(3)}-{i}" for i in range(15)]
            for token in from_web:  # sent to b, which forwards each to a, w's owner
                assert await w.post(rng.choice([a.url, b.url]), "/send", msg=token) == (200, "win")
            await wait_line(server, tid, from_web[-1])
            assert [content for _, content in stranger_lines(server, tid)] == from_web  # in order, once each
            from_discord = [f"dc-{secrets.token_hex(3)}-{i}" for i in range(15)]
            for token in from_discord:
                await server.user_message(tid, alice, token)
            await w.until([a.url, b.url], lambda _: len(w.texts()) >= len(from_discord), rng=rng)
            assert w.texts() == from_discord
            assert await w.post(b.url, "/disconnect") == (200, "win")
            assert len(await wait_notice(server, tid, "disconnected")) == 1
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_page_reloaded_onto_another_instance_within_the_grace_keeps_its_chat(tmp_path, redis_server):
    a, b = await two(tmp_path, redis_server.url)
    rng = random.Random(19)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [a.url], rng)  # owned by a
            gone, its_partner = await paired(http, a.url, b.url, [a.url], rng)  # owned by a too
            # Both pages unload (sent to b, forwarded to a, their owner); only w's page comes back, on b.
            assert await w.post(b.url, "/disconnect", grace="1") == (200, "win")
            assert await gone.post(b.url, "/disconnect", grace="1") == (200, "win")
            assert await w.poll(b.url) is None  # the reloaded page polls again (nothing came meanwhile)
            # The page that did not come back leaves once its grace is over; w's grace began first, so by then
            # w's was over too: its chat must still be live.
            await its_partner.until([b.url], has("strangerDisconnected"))
            assert await p.post(b.url, "/send", msg="still here?") == (200, "win")
            await w.until([a.url, b.url], lambda _: "still here?" in w.texts(), rng=rng)
            assert "strangerDisconnected" not in w.names() + p.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_grace_timer_that_fires_late_still_sees_the_page_that_came_back(tmp_path, redis_server):
    # The owner's loop is stalled past the page's grace (SIGSTOP): its timer fires late. The page
    # polled again right after it went away, so it came back: "since it went away", not "in the
    # last LEAVE_GRACE seconds" (which a late timer moves past the poll).
    from plugins.web.omegle_api import LEAVE_GRACE

    a, b = await two(tmp_path, redis_server.url, lease=30)  # a stalled instance is not taken for dead
    rng = random.Random(23)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            w, p = await paired(http, a.url, b.url, [a.url], rng)  # owned by a
            assert await w.post(a.url, "/disconnect", grace="1") == (200, "win")  # the grace timer is a's
            assert await w.poll(b.url) is None  # the reloaded page polls on b at once
            a.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(LEAVE_GRACE + 2)  # the fault: a's timer is overdue by 2 s when a runs again
            finally:
                a.proc.send_signal(signal.SIGCONT)
            # Two full round trips through a after it ran its overdue timer (and the store read it
            # starts): a leave would have reached both sides by then.
            for n in range(2):
                assert await p.post(a.url, "/send", msg=f"still here? {n}") == (200, "win")
                await w.until([a.url, b.url], lambda _, n=n: f"still here? {n}" in w.texts(), rng=rng)
                assert await w.post(a.url, "/send", msg=f"yes {n}") == (200, "win")
                await p.until([a.url, b.url], lambda _, n=n: f"yes {n}" in p.texts(), rng=rng)
            assert "strangerDisconnected" not in w.names() + p.names()
    finally:
        await asyncio.gather(a.stop(), b.stop())
