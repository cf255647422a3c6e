"""Long uptime: churning many sessions leaves no growth in memory maps or in the state file."""

from __future__ import annotations

import json

from bridge.events import Connected, Disconnected, Message, Start
from bridge.store import MemoryStore

from .conftest import bridge
from .fakediscord import GUILD_ID
from .guarded import GuardedDiscord
from .util import open_chat, stranger_lines, until, wait_line, wait_notice

REMEMBER = 8
SESSIONS = 30


def locked(server, tid: int) -> bool:
    meta = server.channels[tid]["thread_metadata"]
    return bool(meta["archived"] and meta.get("locked"))


async def test_churning_sessions_keeps_maps_and_store_keys_bounded(server, monkeypatch):
    monkeypatch.setattr(GuardedDiscord, "options", {"remember": REMEMBER})
    store = MemoryStore()
    # with the moderation log keeping chat lines, so that memory is shown bounded too
    async with bridge(server, store=store, mod_log_channel=server.text_channels[1], mod_log_lines=5) as b:
        rec = b.platforms["rec"]
        dc = b.platforms["dc"]
        for n in range(SESSIONS):
            uid = server.add_user(f"user{n}")
            tid, _ = await open_chat(server, uid, cid=server.text_channels[n % 2])
            await wait_notice(server, tid, "Looking for someone")
            rec.send(f"r{n}", Start())
            await rec.wait_for(f"r{n}", Connected)
            await wait_notice(server, tid, "You're now chatting")
            await server.user_message(tid, uid, f"from-user-{n}")
            await rec.wait_for(f"r{n}", lambda e, n=n: isinstance(e, Message) and e.text == f"from-user-{n}")
            rec.send(f"r{n}", Message(f"from-stranger-{n}"))
            await wait_line(server, tid, f"from-stranger-{n}")
            await server.typing(tid, uid)
            await server.slash(uid, tid, "stop")
            await rec.wait_for(f"r{n}", Disconnected)
            await server.wait_until(lambda tid=tid: locked(server, tid))
        assert all(len(stranger_lines(server, int(t["id"]))) == 1 for t in server.threads())
        # every session ended: nothing of theirs is held except small, capped memories
        await until(lambda: len(dc.outboxes) == 0)  # an idle thread's outbox is dropped
        assert len(dc.threads) == 0 and not dc.threads.by_user
        assert len(dc.threads.gone) <= REMEMBER
        assert not dc.threads.parents and not dc.sender.newest  # per-thread state ends with the thread
        assert dc.modlog.keep == 5 and not dc.modlog.lines_held()  # chat lines end with the thread
        assert len(dc.commands.cooldowns) <= REMEMBER
        assert len(dc.commands.seen_interactions) <= REMEMBER
        assert len(dc.inbound.seen_messages) <= REMEMBER
        keys = {key for (namespace, key) in store._kv if namespace == "platform:dc"}
        # one stats key per guild (guilds are bounded by Discord), no key per user or per thread
        assert keys - {"counter", "threads", "interactions", f"guild:{GUILD_ID}:stats", "modlog:seq"} == {
            f"webhook:{c}" for c in server.text_channels
        }
        assert json.loads(store._kv[("platform:dc", f"guild:{GUILD_ID}:stats")]) == {"sessions": SESSIONS}
        newest = json.loads(store._kv[("platform:dc", "interactions")])  # one number, the newest handled start
        assert isinstance(newest, int) and newest in dc.commands.seen_interactions
        assert json.loads(store._kv[("platform:dc", "threads")]) == []
