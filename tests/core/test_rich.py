"""The rich relay through the real hub: edits, deletions, reactions and replies between two platforms
with their own message ids, the reference map's bounds, races with Posted, limits and the policy."""

import asyncio
import time

import pytest

from bridge.config import ImageLimits
from bridge.events import (
    Connected,
    Disconnected,
    Edit,
    Message,
    Mode,
    Reaction,
    Retract,
    Room,
    ServerNotice,
    Start,
)
from bridge.images import reencode
from bridge.refs import RefMap
from bridge.rich import emoji_text
from bridge.router import SAVE_DELAY
from bridge.store import MemoryStore
from tests.core.richplatform import RICH, RICH_PERSISTENT
from tests.core.test_images import jpeg_with_gps
from tests.helpers import running


def two(dc=None, mx=None, **bridge):
    return {
        "platforms": {"dc": {"plugin": RICH, **(dc or {})}, "mx": {"plugin": RICH, **(mx or {})}},
        "backends": {"hub": {"plugin": "hub", "repair_cooldown": 0}},
        "bridge": bridge,
    }


async def pair(b, a="a", other="b"):
    dc, mx = b.platforms["dc"], b.platforms["mx"]
    dc.send(a, Start())
    mx.send(other, Start())
    await dc.wait_for(a, Connected)
    await mx.wait_for(other, Connected)
    return dc, mx


def text_is(text):
    return lambda e: isinstance(e, Message) and e.text == text


def ids_in(events):
    """Every reference or id a room was shown."""
    found = set()
    for e in events:
        for name in ("ref", "reply_to"):
            value = getattr(e, name, None)
            if value is not None:
                found.add(value)
    return found


async def test_edit_reaction_reply_retract_both_ways_with_each_sides_own_ids():
    async with running(two()) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("hello", ref="a-own-1"))
        hello = await mx.wait_for("b", text_is("hello"))
        assert hello.ref is not None and hello.ref != "a-own-1"  # a core reference, never dc's id
        dc.send("a", Edit("a-own-1", "hello there"))
        edit = await mx.wait_for("b", Edit)
        assert edit == Edit(mx.id_of("b", "hello"), "hello there")  # mx's own id of the line it showed

        mx.send("b", Reaction(mx.id_of("b", "hello"), "👍"))
        assert await dc.wait_for("a", Reaction) == Reaction("a-own-1", "👍")  # dc's own id of a's message

        mx.send("b", Message("yes", ref="b-own-1", reply_to=mx.id_of("b", "hello")))
        yes = await dc.wait_for("a", text_is("yes"))
        assert (yes.reply_to, yes.quote) == ("a-own-1", "hello there")  # quote of the edited line

        dc.send("a", Reaction(dc.id_of("a", "yes"), "❤️"))
        assert await mx.wait_for("b", Reaction) == Reaction("b-own-1", "❤️")
        mx.send("b", Edit("b-own-1", "yes!"))
        assert await dc.wait_for("a", Edit) == Edit(dc.id_of("a", "yes"), "yes!")
        dc.send("a", Retract("a-own-1"))
        assert await mx.wait_for("b", Retract) == Retract(mx.id_of("b", "hello"))
        mx.send("b", Retract("b-own-1"))
        assert await dc.wait_for("a", Retract) == Retract(dc.id_of("a", "yes"))

        # No platform id crossed: each room saw only its own ids and core references.
        a_ids, b_ids = ids_in(dc.events("a")), ids_in(mx.events("b"))
        assert not {i for i in a_ids if i.startswith("mx-") or i.startswith("b-own")}
        assert not {i for i in b_ids if i.startswith("dc-") or i.startswith("a-own")}
        assert dc.events("a", ServerNotice) == [] and mx.events("b", ServerNotice) == []


async def test_an_edit_and_a_reaction_racing_the_post_are_held_and_delivered_after_it():
    async with running(two(mx={"post": False})) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("first", ref="a1"))
        dc.send("a", Edit("a1", "first, edited"))
        dc.send("a", Edit("a1", "first, edited twice"))
        dc.send("a", Message("marker", ref="a2"))
        await mx.wait_for("b", text_is("marker"))  # b's session handled both edits before this
        assert mx.events("b", Edit) == []  # not delivered yet: mx has not said where it showed "first"
        assert mx.post() == 2
        edits = await mx.wait_count("b", Edit, 2)
        first = mx.ids[mx.room("b")][mx.events("b", Message)[0].ref]
        assert edits == [Edit(first, "first, edited"), Edit(first, "first, edited twice")]


async def test_an_edit_racing_a_deletion_loses():
    async with running(two(mx={"post": False})) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("regret", ref="a1"))
        dc.send("a", Edit("a1", "regret more"))
        dc.send("a", Retract("a1"))
        dc.send("a", Edit("a1", "an edit after the deletion"))
        dc.send("a", Message("marker-1", ref="a2"))
        await mx.wait_for("b", text_is("marker-1"))
        mx.post()
        dc.send("a", Message("marker-2", ref="a3"))
        await mx.wait_for("b", text_is("marker-2"))
        mx.post()
        await mx.wait_for("b", Retract)
        dc.send("a", Message("marker-3", ref="a4"))
        await mx.wait_for("b", text_is("marker-3"))
        assert mx.events("b", Edit) == []  # deletion wins over the edit held with it, and over a later one
        assert len(mx.events("b", Retract)) == 1


async def test_replies_and_edits_of_an_earlier_chat_are_dropped_without_error():
    async with running(two()) as b:
        dc, mx = await pair(b)
        mx.send("b", Message("from the first chat", ref="b1"))
        await dc.wait_for("a", text_is("from the first chat"))
        old = dc.id_of("a", "from the first chat")
        dc.send("a", Start())  # next: a new chat, a new map
        mx.send("c", Start())
        await dc.wait_count("a", Connected, 2)
        await mx.wait_for("c", Connected)
        dc.send("a", Message("answer", ref="a1", reply_to=old))
        answer = await mx.wait_for("c", text_is("answer"))
        assert (answer.reply_to, answer.quote) == (None, None)
        dc.send("a", Reaction(old, "👍"))
        mx.send("b", Edit("b1", "an edit after the chat ended"))  # b's chat is over
        mx.send("b", Start())
        dc.send("a", Message("marker", ref="a2"))
        await mx.wait_for("c", text_is("marker"))
        assert mx.events("c", Reaction) == [] and dc.events("a", Edit) == []
        notices = [e.text for e in dc.events("a", ServerNotice) + mx.events("b", ServerNotice)]
        assert notices == []  # ignored, with no error


async def test_an_edit_after_the_end_is_ignored_quietly():
    async with running(two()) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("bye", ref="a1"))
        await mx.wait_for("b", text_is("bye"))
        dc.send("a", Disconnected())
        await mx.wait_for("b", Disconnected)
        dc.send("a", Edit("a1", "bye!"))
        dc.send("a", Message("idle marker"))  # answered with a notice: the edit before it was handled
        await dc.wait_for("a", ServerNotice)
        assert [e.text for e in dc.events("a", ServerNotice)] == [
            "You're not chatting with anyone, so your message was not sent. Start a chat first."
        ]
        assert mx.events("b", Edit) == []


async def test_the_map_keeps_only_the_newest_messages_per_side():
    async with running(two(refs_per_side=8)) as b:
        dc, mx = await pair(b)
        for n in range(1, 11):
            dc.send("a", Message(f"m{n}", ref=f"a{n}"))
        await mx.wait_for("b", text_is("m10"))
        dc.send("a", Edit("a1", "too old"))  # the 1st and 2nd fell out of a map of 8
        dc.send("a", Edit("a2", "too old"))
        dc.send("a", Edit("a3", "still known"))
        assert await mx.wait_for("b", Edit) == Edit(mx.id_of("b", "m3"), "still known")
        dc.send("a", Message("marker", ref="a11"))
        await mx.wait_for("b", text_is("marker"))
        assert len(mx.events("b", Edit)) == 1
        session = b.router.sessions[dc.room("a")]
        assert len(session.rich.refs.mine) == 8 and len(session.rich.refs.by_id) <= 16


async def test_a_hundred_reactions_a_second_are_rate_limited_with_one_notice():
    async with running(two(reaction_rate=5.0, reaction_burst=20, max_reactions=1000)) as b:
        dc, mx = await pair(b)
        mx.send("b", Message("react to me", ref="b1"))
        await dc.wait_for("a", text_is("react to me"))
        target = dc.id_of("a", "react to me")
        began = time.monotonic()
        for n in range(100):
            dc.send("a", Reaction(target, "👍", add=n % 2 == 0))
        dc.send("a", Message("marker", ref="a1"))
        await mx.wait_for("b", text_is("marker"))
        elapsed = time.monotonic() - began
        got = mx.events("b", Reaction)
        assert 20 <= len(got) <= 20 + 5 * elapsed + 1  # the burst, plus what the rate refilled meanwhile
        assert all(r.ref == "b1" for r in got)
        assert [e.text for e in dc.events("a", ServerNotice)] == ["You're reacting too fast: some reactions were not sent."]


async def test_edits_and_reactions_per_message_are_capped():
    async with running(two(max_edits=2, max_reactions=3)) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("capped", ref="a1"))
        await mx.wait_for("b", text_is("capped"))
        for n in range(5):
            dc.send("a", Edit("a1", f"edit {n}"))
            mx.send("b", Reaction(mx.id_of("b", "capped"), "🙂", add=n % 2 == 0))
        dc.send("a", Message("marker", ref="a2"))
        mx.send("b", Message("marker", ref="b2"))
        await mx.wait_for("b", text_is("marker"))
        await dc.wait_for("a", text_is("marker"))
        assert [e.text for e in mx.events("b", Edit)] == ["edit 0", "edit 1"]
        assert len(dc.events("a", Reaction)) == 3
        assert [e.text for e in dc.events("a", ServerNotice)] == [
            "Your edit was not sent: a message can be corrected 2 times at most."
        ]


async def test_an_edit_is_checked_by_the_policy_and_cleaned():
    data = two()
    data["policy"] = {"lists": {"bad": {"action": "hold", "words": ["forbidden"]}}}
    async with running(data) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("innocent", ref="a1"))
        await mx.wait_for("b", text_is("innocent"))
        dc.send("a", Edit("a1", "now forbidden"))
        dc.send("a", Edit("a1", "fine \u202eagain"))
        edit = await mx.wait_for("b", Edit)
        assert edit.text == "fine again"  # the bidi override is gone; the smuggling edit never came
        assert len(mx.events("b", Edit)) == 1
        assert "not sent" in dc.events("a", ServerNotice)[0].text


async def test_group_reactions_carry_the_label_and_each_rooms_own_id():
    data = {
        "platforms": {"dc": {"plugin": RICH}, "mx": {"plugin": RICH}},
        "backends": {"hub": {"plugin": "hub"}},
    }
    async with running(data) as b:
        dc, mx = b.platforms["dc"], b.platforms["mx"]
        dc.send("a", Start(mode=Mode.GROUP))
        mx.send("b", Start(mode=Mode.GROUP))
        mx.send("c", Start(mode=Mode.GROUP))
        for platform, room in ((dc, "a"), (mx, "b"), (mx, "c")):
            await platform.wait_for(room, Connected)
        dc.send("a", Message("hi group", ref="a1"))
        await mx.wait_for("b", text_is("hi group"))
        await mx.wait_for("c", text_is("hi group"))
        mx.send("b", Reaction(mx.id_of("b", "hi group"), "👋"))
        to_a = await dc.wait_for("a", Reaction)
        to_c = await mx.wait_for("c", Reaction)
        assert to_a.ref == "a1" and to_a.stranger is not None
        assert to_c.ref == mx.id_of("c", "hi group") and to_c.stranger is not None


async def test_pictures_travel_through_the_hub_rate_limited_per_chat_and_counted_per_person():
    picture = reencode(jpeg_with_gps(), ImageLimits())
    data = two(images={"rate": 0.001, "burst": 2})
    data["policy"] = {"max_images": 3, "image_window": "1h"}
    async with running(data) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("", ref="a1", image=picture))
        dc.send("a", Message("with words", ref="a2", image=picture))
        dc.send("a", Message("a third, too fast", ref="a3", image=picture))
        shown = await mx.wait_count("b", Message, 3)
        assert [(m.text, m.image) for m in shown] == [("", picture), ("with words", picture), ("a third, too fast", None)]
        assert [e.text for e in dc.events("a", ServerNotice)] == ["You're sending pictures too fast: this one was not sent."]
        dc.send("a", Start(user="person-1"))  # the per-person count spans chats
        mx.send("c", Start())
        await dc.wait_count("a", Connected, 2)
        for n in range(3):
            dc.send("a", Message(f"p{n}", ref=f"b{n}", image=picture))
        got = await mx.wait_count("c", Message, 3)
        assert [m.image is not None for m in got] == [True, True, False]  # burst 2 per chat again
        dc.send("a", Start(user="person-1"))
        mx.send("d", Start())
        await dc.wait_count("a", Connected, 3)
        for n in range(2):
            dc.send("a", Message(f"q{n}", ref=f"c{n}", image=picture))
        got = await mx.wait_count("d", Message, 2)
        assert [m.image is not None for m in got] == [True, False]  # person-1's 3 pictures an hour are used up
        assert "too many pictures" in dc.events("a", ServerNotice)[-1].text


def test_a_reaction_crosses_as_its_emoji_only():
    assert emoji_text("👍") == "👍"
    assert emoji_text("<:partyparrot:123456789012345678>") == ":partyparrot:"  # no guild emoji id
    assert emoji_text("<a:dance:1>") == ":dance:"
    assert emoji_text("https://cdn.discordapp.com/emojis/1.png") == ""
    assert emoji_text("mxc://example.org/abc") == ""
    assert emoji_text("\u202e" + "x" * 100) == "x" * 28 + " […]"


async def test_nobody_edits_or_deletes_the_other_sides_lines():
    async with running(two()) as b:
        dc, mx = await pair(b)
        dc.send("a", Message("mine only", ref="a1"))
        await mx.wait_for("b", text_is("mine only"))
        theirs = mx.id_of("b", "mine only")
        mx.send("b", Edit(theirs, "words put in a's mouth"))
        mx.send("b", Retract(theirs))
        mx.send("b", Edit("a1", "guessing a's own id"))  # an id of the other platform means nothing here
        mx.send("b", Message("marker", ref="b1"))
        await dc.wait_for("a", text_is("marker"))
        assert dc.events("a", Edit) == [] and dc.events("a", Retract) == []


SHORT_SAVE_INTERVAL = 0.3


@pytest.fixture
def short_saves(monkeypatch):
    """Maps saved SHORT_SAVE_INTERVAL after a change instead of SAVE_INTERVAL (5 s), so a test waits less."""
    import bridge.rich

    monkeypatch.setattr(bridge.rich, "SAVE_INTERVAL", SHORT_SAVE_INTERVAL)


class _SavesSeen(MemoryStore):
    """Notes, at each save of a record with a reference map, what room b had been shown by then."""

    def __init__(self) -> None:
        super().__init__()
        self.mx = None
        self.shown_at_map_save: list[list[str]] = []
        self.saved = asyncio.Event()

    async def save_session(self, record) -> None:
        if record.refs is not None and record.room.id == "a":
            self.shown_at_map_save.append([e.text for e in self.mx.events("b", Message)])
            self.saved.set()
        await super().save_session(record)


async def test_the_map_is_saved_after_the_message_that_changed_it_was_shown(short_saves):
    # The first message of a chat makes its map due for a save (the record and two JSON forms):
    # the save waits for its turn, so the message reaches the partner first.
    store = _SavesSeen()
    async with running(two(dc={"plugin": RICH_PERSISTENT}), store=store) as b:
        store.mx = b.platforms["mx"]
        dc, mx = await pair(b)
        dc.send("a", Message("first", ref="a1"))
        await mx.wait_for("b", text_is("first"))
        async with asyncio.timeout(5):
            await store.saved.wait()
        assert store.shown_at_map_save[0] == ["first"]
        assert RefMap.decode(store._sessions[dc.room("a")].refs).by_platform("a1") is not None


class _MapSaves(MemoryStore):
    """Notes the room of every saved record that carries a reference map, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.map_saves: list[str] = []
        self.saved = asyncio.Event()

    async def save_session(self, record) -> None:
        if record.refs is not None:
            self.map_saves.append(record.room.id)
            self.saved.set()
        await super().save_session(record)


async def test_a_map_no_restart_could_read_back_is_not_saved(short_saves):
    # Room b's platform does not outlive the process, so its hub chat is never resumed: b's map
    # changes first (its own message), a's after it (the Posted of that message); the saves take
    # their turns in that order, so once a's map is saved, b's would have been saved before it.
    store = _MapSaves()
    async with running(two(dc={"plugin": RICH_PERSISTENT}), store=store) as b:
        dc, mx = await pair(b)
        mx.send("b", Message("from b", ref="b1"))
        await dc.wait_for("a", text_is("from b"))
        async with asyncio.timeout(5):
            await store.saved.wait()
        assert store.map_saves == ["a"]
        assert store._sessions[mx.room("b")].refs is None  # its record is kept, without a map
        assert RefMap.decode(store._sessions[dc.room("a")].refs).by_platform(dc.id_of("a", "from b")) is not None


async def test_a_save_queued_behind_another_still_waits_its_own_delay():
    # A map made due while another's save waits for its turn: its own message is still being
    # relayed, so its turn must not come right after the other's (bench_matrix saw it come inside
    # the partner platform's delivery).
    async with running(two(dc={"plugin": RICH_PERSISTENT})) as b:
        router, loop = b.router, asyncio.get_running_loop()
        queued_at: dict[str, float] = {}
        turn_at: dict[str, float] = {}
        second_turn = asyncio.Event()

        class Waiting:
            """What queue_save needs of a session: its room and backend (a hub chat in a room that
            persists, so its map is saved), its current map, and where its turn goes."""

            def __init__(self, name: str) -> None:
                self.name = name
                self.room, self.backend_name = Room("dc", name), "hub"
                self.rich = object()

            def put_save(self, state) -> None:
                turn_at[self.name] = loop.time()
                if self.name == "first":  # the second map became due while the first one waited
                    queued_at["second"] = loop.time()
                    router.queue_save(second, second.rich)
                else:
                    second_turn.set()

        first, second = Waiting("first"), Waiting("second")
        queued_at["first"] = loop.time()
        router.queue_save(first, first.rich)
        async with asyncio.timeout(5):
            await second_turn.wait()
        assert turn_at["first"] - queued_at["first"] >= SAVE_DELAY
        assert turn_at["second"] - queued_at["second"] >= SAVE_DELAY


async def test_a_chat_that_ends_before_its_maps_turn_leaves_no_record(short_saves):
    store = MemoryStore()
    async with running(two(dc={"plugin": RICH_PERSISTENT}, mx={"plugin": RICH_PERSISTENT}), store=store) as b:
        dc, mx = await pair(b)
        queued = asyncio.Event()
        queue_save = b.router.queue_save

        def noted(session, state, due=None) -> None:
            queue_save(session, state, due)
            queued.set()

        b.router.queue_save = noted
        dc.send("a", Message("last words", ref="a1"))  # its map's save is due, then queued ...
        dc.send("a", Disconnected())  # ... and the chat ends before the save's turn
        await mx.wait_for("b", Disconnected)
        await dc.wait_for("a", Disconnected)
        async with asyncio.timeout(5):
            await queued.wait()
            while b.router._later or b.router._saves or dc.room("a") in b.router.sessions:  # the turn has come and gone
                await asyncio.sleep(0)
        assert dc.room("a") not in store._sessions and mx.room("b") not in store._sessions


async def test_a_change_soon_after_a_save_is_saved_without_another_change(short_saves):
    # A map is saved at most once per SAVE_INTERVAL: a change inside the interval is saved when it
    # ends, not only at the next change (a chat's last messages were left out of its saved map).
    store = _SavesSeen()
    async with running(two(dc={"plugin": RICH_PERSISTENT}), store=store) as b:
        store.mx = b.platforms["mx"]
        dc, mx = await pair(b)
        made = time.monotonic()
        dc.send("a", Message("first", ref="a1"))
        await mx.wait_for("b", text_is("first"))
        async with asyncio.timeout(5):
            await store.saved.wait()
        first_saved = time.monotonic()
        assert first_saved - made >= SHORT_SAVE_INTERVAL  # a new chat's map: its first save SAVE_INTERVAL after it was made
        store.saved.clear()
        dc.send("a", Message("second", ref="a2"))  # inside the interval, and nothing after it
        await mx.wait_for("b", text_is("second"))
        async with asyncio.timeout(5):
            await store.saved.wait()
        assert time.monotonic() - first_saved >= SHORT_SAVE_INTERVAL
        assert store.shown_at_map_save == [["first"], ["first", "second"]]
        assert RefMap.decode(store._sessions[dc.room("a")].refs).by_platform("a2") is not None
