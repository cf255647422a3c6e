"""Table tests of the pure parts: commands, inbound classification, rendering, merge markers, room state, config."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from bridge.events import Connected, Disconnected, Message, Mode, Report, Start, Typing
from plugins.matrix import render
from plugins.matrix.commands import Command, parse, to_event
from plugins.matrix.config import MatrixConfig
from plugins.matrix.inbound import Ignore, Media, Said, classify, scrub, strip_reply_fallback
from bridge.delivery import OutboxPolicy, merge_marker
from bridge.outbox import Outbox
from plugins.matrix.rooms import SessionRoom
from plugins.matrix.sender import Sent, Write
from plugins.matrix.txn import TxnIds


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("!stranger start", Command("start")),
        ("!stranger start cats dogs", Command("start", ("cats", "dogs"), "cats dogs")),
        ("!STRANGER Next", Command("next")),
        ("!stranger", Command("help")),
        ("!stranger ask cats or dogs?", Command("ask", ("cats", "or", "dogs?"), "cats or dogs?")),
        ("!stranger frobnicate", Command("unknown", rest="frobnicate")),
        ("!strangers start", None),
        ("hello !stranger start", None),
        ("", None),
    ],
)
def test_parse(body, want):
    assert parse(body, "!stranger") == want


def test_commands_to_events():
    last = Start(interests=("cats",), mode=Mode.RANDOM, user="k")
    assert to_event(Command("start", ("a", "b")), user="k", last=None) == Start(interests=("a", "b"), user="k")
    assert to_event(Command("next"), user="k", last=last) == Start(interests=("cats",), user="k")
    assert to_event(Command("stop"), user="k", last=None) == Disconnected()
    assert to_event(Command("report"), user="k", last=None) == Report()
    assert to_event(Command("ask", ("q?",), "q?"), user="k", last=None) == Start(mode=Mode.ASK, question="q?", user="k")
    assert to_event(Command("answer"), user="k", last=None).mode is Mode.ANSWER
    assert to_event(Command("help"), user="k", last=None) is None


@pytest.mark.parametrize(
    ("content", "want"),
    [
        ({"msgtype": "m.text", "body": "hi"}, Said("hi")),
        ({"msgtype": "m.notice", "body": "bot says"}, Ignore("notice")),
        ({"msgtype": "m.emote", "body": "waves"}, Said("* waves")),
        ({"msgtype": "m.text", "body": "  "}, Ignore("empty")),
        ({"msgtype": "m.location", "body": "geo"}, Ignore("unsupported msgtype 'm.location'")),
        ({"msgtype": "m.image", "body": "x.png", "url": "mxc://hs/abc"}, Media("an image")),
        ({"msgtype": "m.text", "body": "> <@a:hs> old\n> more\n\nnew", "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}}, Said("new")),
        (
            {"msgtype": "m.text", "body": "* x", "m.new_content": {"msgtype": "m.text", "body": "!stranger stop"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}},
            Said("(correction) !stranger stop"),  # an edit never runs a command
        ),
        ({"msgtype": "m.text", "body": "!stranger stop"}, Command("stop")),
        ({"body": 5}, Ignore("unsupported msgtype None")),
    ],
)
def test_classify(content, want):
    assert classify(content, prefix="!stranger") == want


def test_classify_media_names_only_its_kind():
    content = {"msgtype": "m.file", "body": "f", "url": "mxc://hs.example/AbC_1"}
    assert classify(content, prefix="!s") == Media("a file")  # never a link to the user's homeserver
    assert classify({"msgtype": "m.text"}, prefix="!s", event_type="m.sticker") == Media("a sticker")


def test_the_media_links_option_is_gone_with_a_reason():
    import pytest
    from pydantic import ValidationError

    base = {"plugin": "matrix", "homeserver": "https://hs.example", "user_id": "@b:hs.example", "access_token": "t"}
    with pytest.raises(ValidationError, match="allow_media_links` was removed: it sent strangers a download link"):
        MatrixConfig(**base, allow_media_links=False)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("hi @alice:example.org!", "hi [user]!"),
        ("#room:matrix.org and !AbC:hs.example:8448", "[room] and [room]"),
        ("see https://matrix.to/#/!x:y/$z?via=y", "see [link]"),
        ("mxc://hs/abc", "[media]"),
        ("mail me at a@b.c", "mail me at a@b.c"),
        ("in !pO6DdRwRkAxJi8JqEv7TMtd3cxjnQfkD1xA2VZwpHQ4 now", "in [room] now"),  # v12: no server part
        ("wow!!! great!", "wow!!! great!"),
    ],
)
def test_scrub(text, want):
    assert scrub(text) == want


def test_strip_reply_fallback():
    assert strip_reply_fallback("> <@a:b> q\n\nanswer") == "answer"
    assert strip_reply_fallback("no quote") == "no quote"


def test_render_message_and_notices():
    [c] = render.render(Message("a\n<b>x</b>", "Stranger 1"))
    assert render.wire(c, None) == {
        "msgtype": "m.text",
        "body": "Stranger 1: a\n    <b>x</b>",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>Stranger 1:</b> a<br>&nbsp;&nbsp;&nbsp;&nbsp;&lt;b&gt;x&lt;/b&gt;",
        "m.mentions": {},
    }
    [n] = render.render(Connected(common_interests=("cats",)))
    assert n == {"msgtype": "m.notice", "body": "You're now chatting with a random stranger. Say hi! You both like “cats”.", "m.mentions": {}}
    assert render.render(Typing()) == []
    threaded = render.wire(n, "$root")
    assert threaded["m.relates_to"] == {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}


def test_render_long_text_split_and_bounded():
    parts = render.message("<" * 100_000 + "\U0001f600" * 10, None)
    assert len(parts) == 3
    assert parts[2]["body"].endswith(" […]")
    for p in parts:
        wire = json.dumps(render.wire(p, "$r"), ensure_ascii=False).encode()
        assert len(wire) < 64 * 1024


class FakeState:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key):
        return self.data.get(key)

    async def set(self, key, value):
        self.data[key] = value


async def test_txn_ids_survive_restart_without_reuse():
    state = FakeState()
    a = TxnIds(state)
    await a.load()
    first = [await a.take() for _ in range(3)]
    b = TxnIds(state)  # a restart
    await b.load()
    again = await b.take()
    assert again not in first and again.split(".")[0] == first[0].split(".")[0]
    assert len(set(first)) == 3


def test_render_merged_text_keeps_every_line_attributed_and_the_marker_apart():
    marker = merge_marker(3, None)
    [c] = render.message("m0\nm1 <b>\nm2", None, marker)
    assert c["body"] == f"Stranger: m0\n    m1 <b>\n    m2\n{marker}"
    assert c["formatted_body"] == (
        f"<b>Stranger:</b> m0<br>&nbsp;&nbsp;&nbsp;&nbsp;m1 &lt;b&gt;<br>&nbsp;&nbsp;&nbsp;&nbsp;m2<br><i>{marker}</i>"
    )
    assert c["msgtype"] == "m.text" and c["m.mentions"] == {}
    parts = render.message("x" * 9000, "Stranger 2", marker)
    assert len(parts) == 3 and parts[-1]["body"].endswith(marker) and marker not in parts[0]["body"]


async def test_txn_ids_taken_from_the_reserved_block_write_nothing_and_never_repeat():
    class CountingState(FakeState):
        writes = 0

        async def set(self, key, value):
            self.writes += 1
            await super().set(key, value)

    state = CountingState()
    txn = TxnIds(state, block=3)
    await txn.load()
    assert txn.take_reserved() is None and state.writes == 0  # nothing reserved yet: only take() may write
    ids = [await txn.take()]
    while len(ids) < 3:
        ids.append(txn.take_reserved())
    assert state.writes == 1 and txn.take_reserved() is None  # the block of 3 is used up
    ids.append(await txn.take())  # the next block: one more write
    assert state.writes == 2 and len(set(ids)) == 4 and all(TxnIds.ours(i) for i in ids)
    restarted = TxnIds(state, block=3)
    await restarted.load()
    assert await restarted.take() not in ids


async def test_txn_ids_are_ours_and_outbox_keys_are_not():
    txn = TxnIds(FakeState())
    await txn.load()
    from bridge.delivery import Item

    assert TxnIds.ours(await txn.take()) and not TxnIds.ours(Item("text").key)


def test_config_validation():
    base = {"plugin": "matrix", "homeserver": "https://hs.example", "user_id": "@bot:hs.example"}
    with pytest.raises(ValidationError, match="exactly one of access_token or password"):
        MatrixConfig(**base)
    with pytest.raises(ValidationError, match="placeholder"):
        MatrixConfig(**base, access_token="CHANGE-ME")
    with pytest.raises(ValidationError):
        MatrixConfig(**base, access_token="t", allowed_inviters=["example.org"])
    cfg = MatrixConfig(**base, password="secret", allowed_inviters=["@a:x.org", ":y.org"])
    assert cfg.may_invite("@a:x.org") and cfg.may_invite("@anyone:y.org")
    assert not cfg.may_invite("@b:x.org") and not cfg.may_invite("@a:evil.y.org")
    assert "secret" not in repr(cfg)


# ---- ghost mode (appservice) -------------------------------------------------------------------

REGISTRATION = """
id: stranger-bridge
url: http://127.0.0.1:9009
as_token: AS
hs_token: HS
sender_localpart: sbbot
namespaces:
  users:
    - exclusive: true
      regex: "@stranger_.*:hs\\\\.example"
rate_limited: false
receive_ephemeral: true
"""


def test_registration_checked_against_bot_and_ghost_prefix():
    from plugins.matrix.appservice import RegistrationError, ghost_id, parse_registration

    reg = parse_registration(REGISTRATION, bot="@sbbot:hs.example", ghost_prefix="stranger_")
    assert (reg.as_token, reg.hs_token, reg.rate_limited, reg.receive_ephemeral) == ("AS", "HS", False, True)
    with pytest.raises(RegistrationError, match="sender"):
        parse_registration(REGISTRATION, bot="@other:hs.example", ghost_prefix="stranger_")
    with pytest.raises(RegistrationError, match="namespace"):
        parse_registration(REGISTRATION, bot="@sbbot:hs.example", ghost_prefix="ghost_")
    with pytest.raises(RegistrationError, match="namespace"):
        parse_registration(REGISTRATION.replace("true\n      regex", "false\n      regex"), bot="@sbbot:hs.example", ghost_prefix="stranger_")
    with pytest.raises(RegistrationError, match="hs_token"):
        parse_registration(REGISTRATION.replace("hs_token: HS", ""), bot="@sbbot:hs.example", ghost_prefix="stranger_")
    a, b = ghost_id("stranger_", "hs.example"), ghost_id("stranger_", "hs.example")
    assert a != b and any(p.fullmatch(a) for p in reg.users)


@pytest.mark.parametrize(
    ("header", "query", "want"),
    [
        ("Bearer HS", None, True),
        ("Bearer HSx", None, False),
        ("Bearer ", None, False),
        ("Basic HS", None, None),
        (None, "HS", True),
        (None, "nope", False),
        (None, None, None),
    ],
)
def test_hs_token_check(header, query, want):
    from plugins.matrix.appservice import bearer_ok

    assert bearer_ok(header, query, "HS") is want


def test_parse_transaction():
    from plugins.matrix.appservice import parse_transaction

    body = {
        "events": [{"type": "m.room.message", "room_id": "!r", "event_id": "$1"}, {"no": "room"}, "junk"],
        "de.sorunome.msc2409.ephemeral": [
            {"type": "m.typing", "room_id": "!r", "content": {"user_ids": ["@a:x", 5]}},
            {"type": "m.receipt", "room_id": "!r", "content": {}},
        ],
    }
    pushed = parse_transaction(body)
    assert [e["event_id"] for e in pushed.events] == ["$1"]
    assert pushed.typing == (("!r", ("@a:x",)),)
    assert parse_transaction({"ephemeral": [], "de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r", "content": {"user_ids": []}}]}).typing == ()
    with pytest.raises(ValueError):
        parse_transaction(["not", "an", "object"])


def test_ghost_config_validation():
    base = {"plugin": "matrix", "homeserver": "https://hs.example", "user_id": "@bot:hs.example"}
    cfg = MatrixConfig(**base, appservice={"registration": "reg.yaml"})
    assert cfg.appservice.listen == "127.0.0.1:9009" and cfg.appservice.ghost_prefix == "stranger_"
    with pytest.raises(ValidationError, match="leave out access_token"):
        MatrixConfig(**base, access_token="t", appservice={"registration": "reg.yaml"})
    with pytest.raises(ValidationError, match="host:port"):
        MatrixConfig(**base, appservice={"registration": "reg.yaml", "listen": "9009"})
    with pytest.raises(ValidationError, match="localpart"):
        MatrixConfig(**base, appservice={"registration": "reg.yaml", "ghost_prefix": "Stranger "})
    with pytest.raises(ValidationError):
        MatrixConfig(**base, appservice={"registration": "reg.yaml", "unknown": 1})


def test_render_ghost_message_plain_and_merged():
    [c] = render.ghost_message("hi <b>x</b>\n@room")
    assert render.wire(c, None) == {"msgtype": "m.text", "body": "hi <b>x</b>\n@room", "m.mentions": {}}
    [merged] = render.ghost_message("hi\nagain", merge_marker(2, "Stranger 1"))
    assert merged == {
        "msgtype": "m.text",
        "body": "hi\nagain\n2 messages from Stranger 1 were merged into one while delivery was slowed down.",
        "m.mentions": {},
    }


class Recording:
    """A Sender that records what the outbox asks for (the Matrix sender itself is tested against Synapse)."""

    def __init__(self) -> None:
        self.texts: list[tuple[str | None, str, int]] = []
        self.typing: list[tuple[object, bool]] = []

    async def send_text(self, room, item):
        self.texts.append((item.label, item.text, item.count))

    async def send_payload(self, room, item):
        raise AssertionError("no payload expected")

    async def send_typing(self, room, on):
        self.typing.append((room, on))


async def test_ghost_mode_outbox_never_merges_across_ghosts():
    """In ghost mode the outbox label is the ghost: texts of two ghosts never merge into one event."""
    rec = Recording()
    box = Outbox(SessionRoom("!r"), rec, OutboxPolicy(platform="mx", merge_backlog=2))
    for i, ghost in enumerate(["@g1", "@g1", "@g2", "@g2", "@g2"]):
        box.put_text(ghost, f"m{i}")
    await asyncio.wait_for(box.drain(), 5)
    assert rec.texts == [("@g1", "m0\nm1", 2), ("@g2", "m2\nm3\nm4", 3)]


async def test_ghost_map_survives_a_restart_and_orphans_leave(tmp_path):
    """A resumed chat keeps its ghosts; ghosts of chats the core no longer has are to leave."""
    from plugins.matrix.ghosts import Ghosts

    reg = tmp_path / "registration.yaml"
    reg.write_text(REGISTRATION)
    cfg = MatrixConfig(
        plugin="matrix", homeserver="https://hs.example", user_id="@sbbot:hs.example", appservice={"registration": str(reg)}
    )
    state = FakeState()

    async def nothing(pushed):
        return None

    before = Ghosts(cfg, state, nothing)
    await before.load()
    going_on = await before.ghost("!a:hs.example", None)
    alice, bob = await before.ghost("!g:hs.example|$root", "Stranger 1"), await before.ghost("!g:hs.example|$root", "Stranger 2")
    cut = await before.ghost("!c:hs.example", None)
    assert await before.ghost("!a:hs.example", None) == going_on
    assert await before.end("!g:hs.example|$root", "Stranger 1") == [alice]  # one of a group left

    after = Ghosts(cfg, state, nothing)  # a new process on the same state
    await after.load()
    assert await after.ghost("!a:hs.example", None) == going_on
    assert await after.ghost("!g:hs.example|$root", "Stranger 2") == bob
    assert after.labels[bob] == "Stranger 2"
    # "!c" is no session of the core any more: its ghost leaves, as does the group leaver not yet gone
    leave = after.orphans({"!a:hs.example", "!g:hs.example|$root"})
    assert leave == sorted([("!c:hs.example", cut), ("!g:hs.example", alice)])
    assert await after.end("!a:hs.example", everyone=True) == [going_on]
    saved = json.loads(state.data["as_ghosts"])
    assert saved["chats"] == {"!g:hs.example|$root": [["Stranger 2", bob]]}
    assert sorted(map(tuple, saved["leaving"])) == sorted([("!a:hs.example", going_on), ("!c:hs.example", cut), ("!g:hs.example", alice)])
    # a ghost this run made but never joined leaves without a request, and is forgotten
    fresh = await after.ghost("!n:hs.example", None)
    assert await after.end("!n:hs.example", everyone=True) == [fresh]
    assert (await after.send("!n:hs.example", Write(leave=True, sender=fresh))).kind == Sent.OK
    assert ["!n:hs.example", fresh] not in json.loads(state.data["as_ghosts"])["leaving"]
    # a new ghost for a new chat in the same room is a different one
    assert await after.ghost("!a:hs.example", None) != going_on

    broken = FakeState()
    broken.data["as_ghosts"] = "{not json"
    ghosts = Ghosts(cfg, broken, nothing)
    await ghosts.load()  # unreadable: logged, started empty
    assert ghosts.chats == {} and ghosts.leaving == set()


@pytest.mark.parametrize(
    ("text", "room", "root"),
    [("!abc:hs", "!abc:hs", None), ("!abc:hs|$root", "!abc:hs", "$root"), ("!pO6DdRwRkAxJi8Jq", "!pO6DdRwRkAxJi8Jq", None)],
)
def test_session_room_parse_and_format_round_trip(text, room, root):
    from plugins.matrix.rooms import SessionRoom

    where = SessionRoom.parse(text)
    assert (where.room, where.root) == (room, root)
    assert where.format() == text
    assert SessionRoom(room, root) == where and hash(SessionRoom(room, root)) == hash(where)


def test_room_state_stays_bounded_over_room_churn():
    """Rooms joined, typed in, left and encrypted by the thousand: each kind keeps its newest `limit`."""
    from plugins.matrix.rooms import RoomState

    rooms = RoomState(limit=16)
    for n in range(1000):
        rid = f"!r{n}"
        rooms.joined(rid)
        rooms.members.remember(rid, frozenset({"@a:x"}))
        rooms.plaintext.remember(rid)
        rooms.set_typing(rid, frozenset({"@a:x"}))
        rooms.add_thread(rid, f"$t{n}")
        rooms.last_thread.remember((rid, "@a:x"), f"$t{n}")
        rooms.started(f"{rid}|$t{n}", Start())
        rooms.set_typing(rid, frozenset())
        assert rooms.end_all(rid) == [f"{rid}|$t{n}"]
        rooms.left(rid) if n % 2 else rooms.encrypted.remember(rid)
    for kind in ("threads", "thread_rooms", "gone", "encrypted", "plaintext", "members", "last_thread", "last_start"):
        assert len(getattr(rooms, kind)) <= 16, kind
    assert rooms.typing == {} and rooms.active == set()
    assert rooms.closed("!r999") and rooms.closed("!r998")  # the newest keep their meaning
    rooms.joined("!r999")
    assert not rooms.closed("!r999")


_LOADED_ON_DEMAND = r"""
import sys
from bridge.store import MemoryStore
from plugins.matrix.config import MatrixConfig
from plugins.matrix.platform import MatrixPlatform

cfg = MatrixConfig(plugin="matrix", homeserver="http://127.0.0.1:9", user_id="@bot:x", access_token="t", encryption=ENCRYPTION)
MatrixPlatform("mx", cfg, lambda room, event: None, MemoryStore().state_for("platform:mx"))
print(sorted(m for m in ("yaml", "plugins.matrix.appservice", "plugins.matrix.crypto", "bridge.images") if m in sys.modules))
"""


@pytest.mark.parametrize("encryption", [False, True])
def test_a_bot_without_ghosts_or_images_never_loads_their_modules(encryption):
    # PyYAML (ghost mode's registration), the appservice pieces and bridge.images are a bot's heap
    # only when it uses them; the E2EE modules only with encryption on.
    import subprocess
    import sys

    code = _LOADED_ON_DEMAND.replace("ENCRYPTION", repr(encryption))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[-2] == str(["plugins.matrix.crypto"] if encryption else [])
