"""The rich relay on Discord (issue 13): edits, deletions, reactions, replies, with the real discord.py.

The platform layer is driven directly here: stranger-side events are delivered to the platform as
the core would (refs already translated), and what the platform hands the core is recorded.
"""

from __future__ import annotations

import asyncio

from bridge.events import Edit, Message, Posted, Reaction, Retract, Room, Start

from .conftest import bridge
from .fakediscord import BOT_ID, FakeDiscord
from .util import notices, open_chat, paired_with_rec, until

Z = "\u200b"
NONE = {"parse": [], "users": [], "roles": [], "replied_user": False}


def record(platform) -> list:
    """Every event the platform hands the core from now on (still handed on)."""
    seen: list = []
    original = platform.submit

    def submit(room, event):
        seen.append((room, event))
        return original(room, event)

    platform.submit = submit
    return seen


def of(seen: list, kind: type) -> list:
    return [e for _, e in seen if isinstance(e, kind)]


async def posted(seen: list, ref: str) -> str:
    found = await until(lambda: [e.id for e in of(seen, Posted) if e.ref == ref])
    assert len(found) == 1
    return found[0]


def shown(server: FakeDiscord, tid: int) -> list[str]:
    """The content of every stranger line the thread shows now (after edits and deletions)."""
    return [m["content"] for m in server.bot_messages(tid) if m["content"]]


async def test_stranger_line_posted_then_edited_then_deleted(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("frist", ref="c1"))
        pid = await posted(seen, "c1")
        msg = server.find_message(tid, int(pid))
        assert msg["content"] == "frist" and msg["webhook_id"]

        # the edit is rendered like a new stranger line: neutralised, no embed, attributed
        await dc.deliver(room, Edit(pid, "**[Bridge]** Stranger disconnected. @everyone [x](https://evil.example)"))
        await server.wait_until(lambda: msg["edited_timestamp"])
        assert msg["content"] == f"**[Bridge]** Stranger disconnected. @{Z}everyone [x]{Z}(https://evil.example)"
        assert msg["embeds"] == [] and msg["author"]["username"] == "Stranger"
        [patch] = server.writes("PATCH", rf"^/webhooks/\d+/[^/]+/messages/{pid}$")
        assert patch.body["allowed_mentions"] == NONE and patch.body["flags"] & 4 and "username" not in patch.body
        assert patch.query == {"thread_id": str(tid)}

        # a heading or quote an edit tries to open is escaped like any stranger text
        await dc.deliver(room, Edit(pid, "# Notice\n> quoted"))
        await server.wait_until(lambda: msg["content"].startswith("\\#"))
        assert msg["content"] == "\\# Notice\n\\> quoted"

        await dc.deliver(room, Retract(pid))
        await server.wait_until(lambda: server.find_message(tid, int(pid)) is None)
        assert server.writes("DELETE", rf"^/webhooks/\d+/[^/]+/messages/{pid}$")
        # the bridge's own deletion is not handed back to the core as the user's
        await dc.deliver(room, Message("marker", ref="c2"))
        await posted(seen, "c2")
        assert of(seen, Retract) == []
        # an edit racing the deletion changes nothing and posts nothing
        await dc.deliver(room, Edit(pid, "too late"))
        await dc.deliver(room, Message("marker 2", ref="c3"))
        await posted(seen, "c3")
        assert "too late" not in " ".join(shown(server, tid))
        assert len(server.writes("PATCH", r"/messages/")) == 2
        assert shown(server, tid) == ["marker", "marker 2"]


async def test_a_reply_shows_a_quote_line_that_never_pings(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        mine = await server.user_message(tid, alice, "a question")
        await dc.deliver(room, Message("the answer", ref="c1", reply_to=mine["id"],
                                       quote="a @everyone [link](https://evil.example) <@1>\nsecond line"))
        pid = await posted(seen, "c1")
        msg = server.find_message(tid, int(pid))
        assert msg["content"] == f"> a @{Z}everyone [link]{Z}(https://evil.example) <{Z}@{Z}1> second line\nthe answer"
        post = server.writes("POST", r"^/webhooks/\d+/tok")[-1]
        assert post.body["allowed_mentions"] == NONE
        # an edit of the reply keeps its quote
        await dc.deliver(room, Edit(pid, "the better answer"))
        await server.wait_until(lambda: msg["edited_timestamp"])
        assert msg["content"].endswith("\nthe better answer") and msg["content"].startswith("> a @")
        # a stranger's text cannot open a quote line of its own
        await dc.deliver(room, Message("> fake quote\nhi", ref="c2"))
        pid2 = await posted(seen, "c2")
        assert server.find_message(tid, int(pid2))["content"] == "\\> fake quote\nhi"


async def test_a_reply_through_the_bot_keeps_every_line_attributed(server):
    server.webhooks_forbidden = True
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("yes", ref="c1", reply_to="1", quote="you asked"))
        pid = await posted(seen, "c1")
        msg = server.find_message(tid, int(pid))
        assert msg["content"] == "> you asked\n**Stranger:** yes" and not msg.get("webhook_id")
        await dc.deliver(room, Edit(pid, "no\nmaybe"))
        await server.wait_until(lambda: msg["edited_timestamp"])
        assert msg["content"] == "> you asked\n**Stranger:** no\n**Stranger:** maybe"
        [patch] = server.writes("PATCH", rf"^/channels/{tid}/messages/{pid}$")
        assert patch.body["allowed_mentions"] == NONE
        await dc.deliver(room, Retract(pid))
        await server.wait_until(lambda: server.find_message(tid, int(pid)) is None)


async def test_a_long_line_is_edited_and_deleted_in_all_its_parts(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("a" * 1990 + " " + "b" * 1000, ref="c1"))
        pid = await posted(seen, "c1")
        parts = [m for m in server.bot_messages(tid) if m["content"]]
        assert len(parts) == 2 and parts[0]["id"] == pid
        # a reaction on the second part refers to the line (its first part's id)
        await server.react(tid, int(parts[1]["id"]), alice, "👍")
        [reaction] = await until(lambda: of(seen, Reaction))
        assert reaction == Reaction(pid, "👍", True)
        # shortened: the first part carries it, the second goes
        await dc.deliver(room, Edit(pid, "short"))
        await server.wait_until(lambda: server.find_message(tid, int(parts[1]["id"])) is None)
        assert server.find_message(tid, int(pid))["content"] == "short"
        await dc.deliver(room, Retract(pid))
        await server.wait_until(lambda: server.find_message(tid, int(pid)) is None)
        assert of(seen, Retract) == []


async def test_stranger_reactions_are_bot_reactions(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        mine = await server.user_message(tid, alice, "react to me")
        mid = int(mine["id"])
        await dc.deliver(room, Reaction(mine["id"], "👍"))
        await server.wait_until(lambda: server.reactions(tid, mid) == {"👍": [BOT_ID]})
        put = server.writes("PUT", r"/reactions/")[-1]
        assert put.path == f"/channels/{tid}/messages/{mid}/reactions/👍/@me"
        # words, custom emoji and markup are never put on a message
        for bad in ("everyone", "<:x:123>", "x" * 40, "👍 hi", ""):
            await dc.deliver(room, Reaction(mine["id"], bad))
        # in a group two strangers may react alike: the bot's reaction stays while one still does
        await dc.deliver(room, Reaction(mine["id"], "🎉", stranger="Stranger 1"))
        await dc.deliver(room, Reaction(mine["id"], "🎉", stranger="Stranger 2"))
        await dc.deliver(room, Reaction(mine["id"], "🎉", add=False, stranger="Stranger 1"))
        await dc.deliver(room, Reaction(mine["id"], "👍", add=False))
        await server.wait_until(lambda: server.reactions(tid, mid) == {"🎉": [BOT_ID]})
        await dc.deliver(room, Reaction(mine["id"], "🎉", add=False, stranger="Stranger 2"))
        await server.wait_until(lambda: server.reactions(tid, mid) == {})
        assert [r.method for r in server.writes(None, r"/reactions/")] == ["PUT", "PUT", "DELETE", "DELETE"]
        assert all(r.status == 204 for r in server.writes(None, r"/reactions/"))


async def test_user_edits_deletions_reactions_and_replies_are_handed_on(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("stranger says", ref="c1"))
        pid = await posted(seen, "c1")
        first = await server.user_message(tid, alice, "helo <@5>")
        await server.user_edit(first, "hello <@5>")
        reply = await server.user_reply(tid, alice, "re", server.find_message(tid, int(pid)))
        await server.react(tid, int(pid), alice, "😀")
        await server.react(tid, int(pid), alice, "😀", add=False)
        await server.user_delete(first)
        # not relayed: another member, a bot, a custom emoji, the bridge's own reaction
        mallory = server.add_user("mallory")
        await server.react(tid, int(pid), mallory, "😡")
        await dc.deliver(room, Reaction(reply["id"], "👀"))
        await server.wait_until(lambda: server.reactions(tid, int(reply["id"])))
        await server.user_message(tid, alice, "last")
        await until(lambda: [e for e in of(seen, Message) if e.text == "last"])
        user = [e for r, e in seen if r == room and not isinstance(e, Posted | Start)]
        assert user == [
            Message("helo @someone", ref=first["id"]),
            Edit(first["id"], "hello @someone"),
            Message("re", ref=reply["id"], reply_to=pid),
            Reaction(pid, "😀", True),
            Reaction(pid, "😀", False),
            Retract(first["id"]),
            Message("last", ref=server.messages[tid][-1]["id"]),
        ]


async def test_a_flood_of_reactions_is_paced_and_ends_in_the_users_state(server):
    from plugins.discord.order import REACTIONS_BURST, REACTIONS_PER_SECOND

    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        mine = await server.user_message(tid, alice, "spam target")
        mid = int(mine["id"])
        began = asyncio.get_running_loop().time()
        for n in range(100):  # 100 changes as fast as the gateway carries them: 50 adds, 50 removes
            await server.react(tid, mid, alice, "👍", add=n % 2 == 0)
        await server.react(tid, mid, alice, "🔥")  # the last state: 👍 off, 🔥 on
        last = lambda emoji: ([e.add for e in of(seen, Reaction) if e.emoji == emoji] or [None])[-1]  # noqa: E731
        await until(lambda: last("🔥") is True and last("👍") is False, timeout=20)
        elapsed = asyncio.get_running_loop().time() - began
        handed = of(seen, Reaction)
        assert len(handed) <= REACTIONS_BURST + REACTIONS_PER_SECOND * elapsed + 1
        assert len(handed) < 30
        assert all(e.ref == mine["id"] for e in handed)


async def test_nothing_after_the_chat_ended(server):
    from bridge.events import Disconnected

    async with bridge(server) as b:
        dc = b.platforms["dc"]
        rec = b.platforms["rec"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("bye", ref="c1"))
        pid = await posted(seen, "c1")
        mine = await server.user_message(tid, alice, "mine")
        rec.send("w", Disconnected())
        await server.wait_until(lambda: server.channels[tid]["thread_metadata"]["locked"])
        # the stranger side: an edit, a deletion, a reaction after the end post nothing
        await dc.deliver(room, Edit(pid, "changed"))
        await dc.deliver(room, Retract(pid))
        await dc.deliver(room, Reaction(mine["id"], "👍"))
        # the user side: her edit, reaction and deletion after the end are not handed on
        await server.user_edit(mine, "edited later")
        await server.react(tid, int(pid), alice, "👍")
        await server.user_delete(mine)
        await dc.flush()
        # a marker through the same gateway: her next chat's thread exists, so the above were handled
        await open_chat(server, alice)
        assert server.find_message(tid, int(pid))["content"] == "bye"
        assert not server.writes("PATCH", r"/messages/") and not server.writes("DELETE", r"/messages/")
        assert not server.writes("PUT", r"/reactions/")
        assert [e for e in of(seen, Edit) + of(seen, Reaction) + of(seen, Retract)] == []


async def test_a_line_read_back_after_a_reset_is_posted_once_with_its_id(server):
    # The webhook stored the line, then the connection was reset: the read-back finds it, and the
    # core is told its id exactly once (no second message, no second Posted).
    async with bridge(server, request_timeout=2.0) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("before", ref="c0"))
        await posted(seen, "c0")
        server.fail("POST", r"^/webhooks/\d+/tok", after_store=True, action="reset")
        await dc.deliver(room, Message("stored once", ref="c1"))
        await dc.deliver(room, Message("after", ref="c2"))
        await posted(seen, "c2")
        pid = await posted(seen, "c1")
        assert shown(server, tid) == ["before", "stored once", "after"] and server.unanswered == 1
        assert [e.ref for e in of(seen, Posted)] == ["c0", "c1", "c2"]
        assert server.find_message(tid, int(pid))["content"] == "stored once"
        await dc.deliver(room, Edit(pid, "stored once, edited"))
        await server.wait_until(lambda: shown(server, tid)[1] == "stored once, edited")


def png(width: int = 4, height: int = 3) -> bytes:
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


async def test_a_stranger_picture_is_uploaded_only_where_pictures_are_on(server):
    from bridge.events import Image

    from .test_admin import admin_user, answer

    picture = Image(png(), "image/png", 4, 3)
    async with bridge(server, images=True) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        # the operator allows pictures, this server's admins have not: a notice, no upload
        await dc.deliver(room, Message("look", ref="c1", image=picture))
        await dc.deliver(room, Message("", ref="c2", image=picture))
        await server.wait_until(lambda: len([n for n in notices(server, tid) if "pictures are off here" in n]) == 2)
        pid = await posted(seen, "c1")
        assert server.find_message(tid, int(pid))["attachments"] == [] and shown(server, tid) == ["look"]
        assert not [p for p in server.writes("POST") if p.files]
        assert [e.ref for e in of(seen, Posted)] == ["c1"]  # the picture alone showed nothing
        # the server's admins switch pictures on: the next one is uploaded as a file
        boss = admin_user(server)
        saved = await answer(server, await server.admin(boss, server.text_channels[0], "settings", images=True))
        assert "Relay pictures: yes" in saved["content"]
        await dc.deliver(room, Message("now @everyone", ref="c3", image=picture))
        pid = await posted(seen, "c3")
        msg = server.find_message(tid, int(pid))
        [upload] = [p for p in server.writes("POST", r"^/webhooks/\d+/tok") if p.files]
        assert upload.body["allowed_mentions"] == NONE and upload.body["content"] == f"now @{Z}everyone"
        [(field, filename, ctype, data)] = upload.files
        assert (field, filename, ctype, data) == ("files[0]", "picture.png", "image/png", picture.data)
        assert len(msg["attachments"]) == 1 and "http" not in msg["content"]
        # deleting the line deletes the picture with it
        await dc.deliver(room, Retract(pid))
        await server.wait_until(lambda: server.find_message(tid, int(pid)) is None)


async def test_pictures_stay_off_unless_the_operator_allows_them(server):
    from bridge.events import Image

    from .test_admin import admin_user, answer

    async with bridge(server) as b:
        dc = b.platforms["dc"]
        boss = admin_user(server)
        saved = await answer(server, await server.admin(boss, server.text_channels[0], "settings", images=True))
        assert "Relay pictures: yes, but the bridge has pictures off, so none are relayed" in saved["content"]
        alice, tid = await paired_with_rec(server, b)
        await dc.deliver(Room("dc", str(tid)), Message("pic", ref="c1", image=Image(png(), "image/png", 4, 3)))
        await server.wait_until(lambda: [n for n in notices(server, tid) if "pictures are off here" in n])
        assert not [p for p in server.writes("POST") if p.files]
        # her own picture is not sent either, and she is told
        seen = record(dc)
        files = server.attachments(tid, [("me.png", "image/png", png())])
        await server.user_message(tid, alice, "mine", attachments=files)
        await server.wait_until(lambda: [n for n in notices(server, tid) if "Files and stickers are not sent" in n])
        [message] = await until(lambda: of(seen, Message))
        assert message.image is None and message.text == "mine"
        assert server.cdn_fetches == []


async def test_lines_merged_while_slowed_keep_their_own_ids(server):
    # A 429 slows the thread: the lines queued behind it merge into one message. Each keeps its
    # own id for the core; editing or deleting one re-renders the message with the others kept.
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        server.fail("POST", r"^/webhooks/\d+/tok", 429, retry_after=0.5, query={"thread_id": str(tid)})
        for n in range(4):
            await dc.deliver(room, Message(f"m{n}", ref=f"c{n}"))
        ids = [await posted(seen, f"c{n}") for n in range(4)]
        messages = [m for m in server.bot_messages(tid) if m["content"]]
        assert [m["content"].split("\n-#")[0] for m in messages] == ["m0", "m1\nm2\nm3"]
        head = messages[1]["id"]
        assert ids == [messages[0]["id"], head, f"{head}:1", f"{head}:2"]
        await dc.deliver(room, Edit(ids[2], "M2"))
        await server.wait_until(lambda: messages[1]["edited_timestamp"])
        assert messages[1]["content"] == "m1\nM2\nm3"
        await dc.deliver(room, Retract(ids[1]))
        await server.wait_until(lambda: messages[1]["content"] == "M2\nm3")
        await dc.deliver(room, Retract(ids[2]))
        await dc.deliver(room, Retract(ids[3]))
        await server.wait_until(lambda: server.find_message(tid, int(head)) is None)
        assert shown(server, tid) == ["m0"]


async def test_only_pictures_from_the_configured_cdn_are_fetched(server):
    from .test_admin import admin_user, answer

    async with bridge(server, images=True, cdn_base=server.cdn_base) as b:
        dc = b.platforms["dc"]
        boss = admin_user(server)
        await answer(server, await server.admin(boss, server.text_channels[0], "settings", images=True))
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        stored = server.attachments(tid, [("a.png", "image/png", png())])
        elsewhere = [{**stored[0], "url": "https://evil.example/a.png"}]
        big = server.attachments(tid, [("b.png", "image/png", png())], size=9 * 1024 * 1024)
        pdf = server.attachments(tid, [("c.pdf", "application/pdf", b"%PDF-1.4")])
        await server.user_message(tid, alice, "one", attachments=elsewhere)
        await server.user_message(tid, alice, "two", attachments=big)
        await server.user_message(tid, alice, "three", attachments=pdf)
        await until(lambda: [e.text for e in of(seen, Message)] == ["one", "two", "three"])
        assert all(e.image is None for e in of(seen, Message))
        await server.wait_until(lambda: len(notices(server, tid)) >= 5)
        said = notices(server, tid)[-3:]
        assert said == [
            "Your picture was not sent to the stranger. It is not stored where Discord keeps attachments.",
            "Your picture was not sent to the stranger. The picture is too large (the limit is 5.2 MB).",
            "Only pictures (PNG, JPEG, GIF, WebP), one per message, are sent; other files and stickers are not.",
        ]
        assert server.cdn_fetches == []  # nothing was downloaded: not from elsewhere, not too big


async def test_an_edit_or_deletion_lost_after_store_is_repeated_safely(server):
    async with bridge(server, request_timeout=2.0) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        _, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("one", ref="c1"))
        await dc.deliver(room, Message("two", ref="c2"))
        first, second = await posted(seen, "c1"), await posted(seen, "c2")
        server.fail("PATCH", r"^/webhooks/\d+/[^/]+/messages/\d+$", 500, after_store=True)
        await dc.deliver(room, Edit(first, "one, edited"))
        server.fail("DELETE", r"^/webhooks/\d+/[^/]+/messages/\d+$", after_store=True, action="reset")
        await dc.deliver(room, Retract(second))
        await dc.deliver(room, Message("three", ref="c3"))
        await posted(seen, "c3")
        assert shown(server, tid) == ["one, edited", "three"]
        patches = server.writes("PATCH", r"/messages/")
        assert [p.status for p in patches] == [500, 200]  # repeated once, same content
        deletes = server.writes("DELETE", r"/messages/")
        assert deletes[0].status == -1 and all(d.status in (404, 204) for d in deletes[1:])


async def test_a_picture_through_the_bot_is_a_multipart_upload_with_a_nonce(server):
    from bridge.events import Image

    from .test_admin import admin_user, answer

    server.webhooks_forbidden = True
    picture = Image(png(), "image/png", 4, 3)
    async with bridge(server, images=True) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        await answer(server, await server.admin(admin_user(server), server.text_channels[0], "settings", images=True))
        _, tid = await paired_with_rec(server, b)
        await dc.deliver(Room("dc", str(tid)), Message("see", ref="c1", image=picture))
        pid = await posted(seen, "c1")
        msg = server.find_message(tid, int(pid))
        assert msg["content"] == "**Stranger:** see" and not msg.get("webhook_id") and len(msg["attachments"]) == 1
        [upload] = [p for p in server.writes("POST", rf"^/channels/{tid}/messages$") if p.files]
        assert upload.body["allowed_mentions"] == NONE and upload.body["nonce"] and upload.body["enforce_nonce"]
        assert [f[1:] for f in upload.files] == [("picture.png", "image/png", picture.data)]


async def test_replies_and_pictures_sent_while_the_gateway_was_away_are_caught_up(server):
    from .test_admin import admin_user, answer

    async with bridge(server, images=True, cdn_base=server.cdn_base) as b:
        dc = b.platforms["dc"]
        await answer(server, await server.admin(admin_user(server), server.text_channels[0], "settings", images=True))
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        await dc.deliver(Room("dc", str(tid)), Message("question?", ref="c1"))
        pid = await posted(seen, "c1")
        await server.invalidate()  # the bot must IDENTIFY again: what follows reaches it only by catch-up
        reply = await server.user_reply(tid, alice, "answer", server.find_message(tid, int(pid)))
        files = server.attachments(tid, [("p.png", "image/png", png(8, 8))])
        shot = await server.user_message(tid, alice, "shot", attachments=files)
        got = await until(lambda: len(m := of(seen, Message)) >= 2 and m, timeout=20)
        assert got[0] == Message("answer", ref=reply["id"], reply_to=pid)
        assert got[1].ref == shot["id"] and got[1].text == "shot"
        assert got[1].image is not None and (got[1].image.width, got[1].image.height) == (8, 8)
        assert server.identifies == 2


async def test_after_a_restart_a_deletion_still_removes_every_part_of_a_line(server):
    from bridge.store import MemoryStore

    store = MemoryStore()
    async with bridge(server, store=store, keep_open=True) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        await dc.deliver(room, Message("a" * 1990 + " " + "b" * 1000, ref="c1"))
        long_id = await posted(seen, "c1")
        server.fail("POST", r"^/webhooks/\d+/tok", 429, retry_after=0.5, query={"thread_id": str(tid)})
        for n in range(2, 6):
            await dc.deliver(room, Message(f"m{n}", ref=f"c{n}"))
        merged = [await posted(seen, f"c{n}") for n in range(2, 6)][1:]  # m3, m4, m5 share one message
        assert merged[1] == f"{merged[0]}:1"
        await dc.flush()
    parts = [m["id"] for m in server.bot_messages(tid) if m["content"].startswith(("a", "b"))]
    assert len(parts) == 2 and parts[0] == long_id
    async with bridge(server, store=store, keep_open=True) as b:
        dc = b.platforms["dc"]
        seen = record(dc)
        await dc.ready()
        room = Room("dc", str(tid))
        # a reaction on the second part still refers to the line
        await server.react(tid, int(parts[1]), alice, "👍")
        [reaction] = await until(lambda: of(seen, Reaction))
        assert reaction.ref == long_id
        await dc.deliver(room, Retract(long_id))
        await server.wait_until(lambda: all(server.find_message(tid, int(p)) is None for p in parts))
        # a merged message: an edit cannot re-render lines it no longer knows, a deletion of all removes it
        await dc.deliver(room, Edit(merged[0], "changed"))
        for ref in (merged[0], f"{merged[0]}:1"):
            await dc.deliver(room, Retract(ref))
        await dc.deliver(room, Message("marker", ref="c9"))
        await posted(seen, "c9")
        assert server.find_message(tid, int(merged[0]))["content"].startswith("m3\nm4\nm5")
        await dc.deliver(room, Retract(f"{merged[0]}:2"))
        await server.wait_until(lambda: server.find_message(tid, int(merged[0])) is None)


async def test_a_flood_of_stranger_reactions_costs_a_few_calls(server):
    async with bridge(server) as b:
        dc = b.platforms["dc"]
        alice, tid = await paired_with_rec(server, b)
        room = Room("dc", str(tid))
        mine = await server.user_message(tid, alice, "target")
        for n in range(100):
            await dc.deliver(room, Reaction(mine["id"], "👍", add=n % 2 == 0))
            if n % 10 == 0:
                await asyncio.sleep(0)  # let the outbox run now and then, as deliveries would
        await dc.deliver(room, Reaction(mine["id"], "🔥"))
        await server.wait_until(lambda: server.reactions(tid, int(mine["id"])) == {"🔥": [BOT_ID]})
        await dc.flush()
        calls = server.writes(None, r"/reactions/")
        assert len(calls) <= 25 and all(c.status == 204 for c in calls)
        # 64 distinct emoji changes at most wait per thread: more are dropped, not queued without end
        from plugins.discord.rich import PENDING_REACTIONS

        for n in range(200):
            await dc.deliver(room, Reaction(mine["id"], chr(0x1F600 + n % 80), stranger=f"S{n}"))
        assert len(dc.rich.reactions[tid].waiting) == PENDING_REACTIONS
