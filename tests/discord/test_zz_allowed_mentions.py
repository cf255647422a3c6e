"""Runs last in this directory: every write any test made to a fake Discord must allow no mention."""

from __future__ import annotations

import re

from bridge.events import Message

from .conftest import bridge
from .fakediscord import ALL_REQUESTS, Recorded
from .util import paired_with_rec, wait_line

WRITE = {"POST", "PUT", "PATCH"}
MESSAGE_WRITES = [
    ("POST", r"^/channels/\d+/messages$"),
    ("PATCH", r"^/channels/\d+/messages/\d+$"),
    ("POST", r"^/webhooks/\d+/[^/]+$"),
    ("PATCH", r"^/webhooks/\d+/[^/]+/messages/[^/]+$"),
]


def allows_nothing(mentions: object) -> bool:
    if not isinstance(mentions, dict) or mentions.get("parse") != []:
        return False
    return not mentions.get("users") and not mentions.get("roles") and not mentions.get("replied_user")


def problem(rec: Recorded) -> str | None:
    body = rec.body if isinstance(rec.body, dict) else {}
    if any(rec.method == m and re.search(p, rec.path) for m, p in MESSAGE_WRITES):
        return None if allows_nothing(body.get("allowed_mentions")) else "message write without allowed_mentions none"
    if rec.method == "POST" and rec.path.endswith("/callback"):
        data = body.get("data") or {}
        if body.get("type") in (5, 6):  # a defer: it carries no text at all
            return None if not data.get("content") and not data.get("embeds") else "defer with text"
        return None if allows_nothing(data.get("allowed_mentions")) else "interaction reply without allowed_mentions none"
    if rec.method == "POST" and rec.path.endswith("/threads") and "message" in body:
        return None if allows_nothing(body["message"].get("allowed_mentions")) else "thread starter without allowed_mentions none"
    if isinstance(rec.body, dict) and ("content" in rec.body or "embeds" in rec.body):
        return f"unexpected text-bearing write {rec.method} {rec.path}"
    return None


async def test_every_write_of_the_suite_allows_no_mention(server):
    # Our own traffic first, so this audit is never vacuous when run alone.
    async with bridge(server) as b:
        rec = b.platforms["rec"]
        alice, tid = await paired_with_rec(server, b)
        rec.send("w", Message("@everyone audit"))
        await wait_line(server, tid, "audit")
        interaction = await server.slash(alice, tid, "help")
        await server.wait_until(lambda: server.replies(interaction))
    writes = [r for r in ALL_REQUESTS if r.method in WRITE]
    kinds = {(r.method, re.sub(r"\d+", "N", r.path.split("/tok")[0])) for r in writes}
    assert len(writes) >= 10 and len(kinds) >= 6, kinds
    bad = [(r.method, r.path, problem(r), r.body) for r in writes if problem(r)]
    assert bad == []
    # stranger text (webhook posts under a stranger's name) never unfurls links
    stranger_posts = [r for r in writes if r.method == "POST" and "username" in (r.body or {})]
    assert stranger_posts and all(r.body["flags"] & 4 for r in stranger_posts)
