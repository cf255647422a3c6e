"""Cost of the full policy check per message (content lists, patterns, links) with 1,000 words and 50 patterns."""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import string
import time
from pathlib import Path

from bench.bench_core import latency_under_load, pair_up
from bench.common import emit, percentile
from bridge.app import Bridge
from bridge.config import parse_config
from bridge.events import Message, Room
from bridge.store import MemoryStore

WORDS = 1000
PATTERNS = 50
MESSAGES = 20_000

_CHAT = [
    "hi", "hey how are you", "asl?", "where are you from", "lol that's funny", "i'm bored tbh",
    "do you like music? i listen to a lot of jazz and some metal", "what's your favourite movie",
    "brb", "ok", "nice to meet you!", "I have been learning Python for three weeks now and it is great",
    "can you see this link https://example.com/page?x=1", "haha", "wanna play a game later?",
    "Je suis français, et toi ?", "привет как дела", "日本から来ました", "¿de dónde eres?",
    "what do you think about the weather today, it is raining here all day long",
]  # fmt: skip


def _policy_table(rng: random.Random) -> dict:
    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))

    words = sorted({word() for _ in range(WORDS * 2)})[:WORDS]
    phrases = [f"{word()} {word()}" for _ in range(50)]
    patterns = [rf"\b{word()}s*\b" if i % 2 else rf"\b{word()}[0-9]{{2,4}}\b" for i in range(PATTERNS)]
    return {
        "links": "defang",
        "lists": {
            "mask": {"action": "mask", "words": words[:600]},
            "hold": {"action": "hold", "words": words[600:900] + phrases, "patterns": patterns[:25]},
            "end": {"action": "end", "words": words[900:], "patterns": patterns[25:]},
        },
    }


def _policy(rng: random.Random):
    from bridge.policy.config import PolicySection  # not at the top: see relay_against_the_filed_code

    return PolicySection.model_validate(_policy_table(rng))


def _bridge_data(policy: dict | None) -> dict:
    data = {
        "bridge": {"user_rate": 1e9, "user_burst": 10**9, "stranger_rate": 1e9, "stranger_burst": 10**9, "inbox_size": 100000},
        "platforms": {"sink": {"plugin": "bench.bench_core:SinkPlatform"}},
        "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
    }
    if policy is not None:
        data["policy"] = policy
    return data


async def _relay_rate(policy: dict | None, total: int = 10000) -> float:
    """Messages per second through the hub between two sink rooms, with or without a policy."""
    async with Bridge(parse_config(_bridge_data(policy), env=False), store=MemoryStore()) as bridge:
        sink = await pair_up(bridge, 1)
        sink.messages, sink.target = 0, total
        sink.done.clear()
        a, b = Room("sink", "0"), Room("sink", "1")
        started = time.perf_counter()
        for n in range(total // 2):  # every text different, as in real chats (no verdict is reused)
            sink.submit(a, Message(f"0 hello, how are you today? {n}"))
            sink.submit(b, Message(f"0 fine thanks, and you? see example.com {n}"))
            if n % 200 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(sink.done.wait(), 120)
        return total / (time.perf_counter() - started)


def relay_with_and_without_policy() -> None:
    table = _policy_table(random.Random(11))
    plain, policed = [], []
    for _ in range(3):  # interleaved, so a change in machine load hits both alike
        plain.append(asyncio.run(_relay_rate(None)))
        policed.append(asyncio.run(_relay_rate(table)))
    off, on = statistics.median(plain), statistics.median(policed)
    emit("policy_relay_throughput_off", off, "messages/s")
    emit("policy_relay_throughput_on", on, "messages/s", words=WORDS, patterns=PATTERNS)
    emit("policy_relay_throughput_ratio", on / off, "ratio", target=">= 0.9")
    # What the policy adds to each relayed message (0.9 needs it under about a ninth of the cost without).
    emit("policy_relay_added_per_message", 1e6 / on - 1e6 / off, "us", words=WORDS, patterns=PATTERNS)


def relay_against_the_filed_code() -> None:
    """Issue 11's wording, "relay throughput and latency within 10 % of today's with a policy on":
    run with `python -m bench.compare --against OLD bench_policy:relay_against_the_filed_code`,
    OLD a checkout of the code the issue was filed on (d35f5d8, with this file copied into its
    bench/). That code has no content policy, so there it measures the plain relay; here the
    relay with the 1,000-word, 50-pattern policy on. Each figure says which it measured."""
    import bridge  # the tree's own package: an editable install elsewhere may still resolve bridge.policy

    policed = (Path(bridge.__file__).parent / "policy").is_dir()
    table = _policy_table(random.Random(11)) if policed else None
    rates = [asyncio.run(_relay_rate(table)) for _ in range(3)]
    emit("policy_on_vs_filed_relay_throughput", statistics.median(rates), "messages/s", policy=policed)
    config = parse_config(_bridge_data(table), env=False)
    asyncio.run(latency_under_load(name="policy_on_vs_filed_latency", config=config))


def relay_latency_in_cpu_time() -> None:
    """`relay_against_the_filed_code`'s latency with the stamps read from this thread's CPU time
    (as `bench_core.latency_in_cpu_time`): what the relay itself spends between a message's submit
    and its delivery, which other load on the machine leaves nearly alone. Not in `main`: for
    side-by-side runs on a shared machine, with this file copied into the other tree's bench/."""
    import bridge

    policed = (Path(bridge.__file__).parent / "policy").is_dir()
    table = _policy_table(random.Random(11)) if policed else None
    config = parse_config(_bridge_data(table), env=False)
    asyncio.run(latency_under_load(time.thread_time, name="policy_on_vs_filed_latency_cpu", config=config))


def main() -> None:
    rng = random.Random(11)
    policy = _policy(rng)
    rules = policy.rules_for("discord")
    listed = sorted(rules.words)
    messages = []
    for i in range(MESSAGES):
        text = rng.choice(_CHAT)
        if i % 20 == 0:  # one message in twenty carries a listed word
            text += " " + rng.choice(listed)
        messages.append(text)
    for text in messages[:2000]:  # warm up
        rules.check(text)
    gc.disable()
    times = []
    clock = time.perf_counter_ns
    for text in messages:
        t0 = clock()
        rules.check(text)
        times.append((clock() - t0) / 1000)
    gc.enable()
    emit("policy_check_p50", percentile(times, 50), "us", words=WORDS, patterns=PATTERNS)
    emit("policy_check_p99", percentile(times, 99), "us", target="<= 50", words=WORDS, patterns=PATTERNS)
    # The relay's two texts below, each one different: with a link (defanged) and without.
    for kind, form in (("plain", "0 hello, how are you today? {}"), ("link", "0 fine thanks, and you? see example.com {}")):
        runs = []
        for n in range(MESSAGES // 2):
            text = form.format(n)
            t0 = clock()
            rules.check(text)
            runs.append((clock() - t0) / 1000)
        emit(f"policy_check_relay_{kind}_p50", percentile(runs, 50), "us", words=WORDS, patterns=PATTERNS)
    # Hostile input at the longest message the core lets through: single letters (every token
    # starts a spacing-trick run), dotted pairs, look-alike letters. Figures only, no target.
    hostile = {
        "letters": " ".join(rng.choice(string.ascii_lowercase) for _ in range(2000)),
        "dotted": ("a.b " * 1000)[:4000],
        "lookalikes": ("ѕһіт " * 800)[:4000],
    }
    for name, text in hostile.items():
        runs = []
        for _ in range(30):
            t0 = clock()
            rules.check(text)
            runs.append((clock() - t0) / 1000)
        emit(f"policy_check_hostile_{name}_4000_chars_p50", percentile(runs, 50), "us")
    t0 = time.perf_counter()
    _policy(random.Random(11))
    emit("policy_compile", (time.perf_counter() - t0) * 1000, "ms", words=WORDS, patterns=PATTERNS)
    relay_with_and_without_policy()


if __name__ == "__main__":
    main()
