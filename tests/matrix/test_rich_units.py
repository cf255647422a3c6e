"""Table tests of the rich relay's pure parts: relations read from user events, ids, and the rendered contents."""

from __future__ import annotations

import pytest

from plugins.matrix import render
from plugins.matrix.relations import Relations, annotation_of, posted_id, redacted_of, relation_of, split_id


@pytest.mark.parametrize(
    ("content", "want"),
    [
        ({"body": "x"}, (None, None, None)),
        ({"m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}}, ("$a", None, None)),
        ({"m.relates_to": {"rel_type": "m.replace", "event_id": "not an id"}}, (None, None, None)),
        ({"m.relates_to": {"m.in_reply_to": {"event_id": "$b"}}}, (None, "$b", None)),
        ({"m.relates_to": {"rel_type": "m.thread", "event_id": "$r", "is_falling_back": True, "m.in_reply_to": {"event_id": "$c"}}},
         (None, None, "$r")),
        ({"m.relates_to": {"rel_type": "m.thread", "event_id": "$r", "is_falling_back": False, "m.in_reply_to": {"event_id": "$c"}}},
         (None, "$c", "$r")),
        ({"m.relates_to": {"m.in_reply_to": {"event_id": "$x|1"}}}, (None, None, None)),  # never one of our merged ids
        ({"m.relates_to": "junk"}, (None, None, None)),
    ],
)
def test_relation_of(content, want):
    assert relation_of(content) == want


def test_annotations_redactions_and_ids():
    assert annotation_of({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": "👍"}}) == ("$t", "👍")
    assert annotation_of({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": ""}}) is None
    assert annotation_of({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": "k" * 257}}) is None
    assert annotation_of({"m.relates_to": {"rel_type": "m.reference", "event_id": "$t", "key": "x"}}) is None
    assert annotation_of("junk") is None
    assert redacted_of({"redacts": "$a", "content": {}}) == "$a"
    assert redacted_of({"content": {"redacts": "$b"}}) == "$b"  # room version 11 and later
    assert redacted_of({"content": {}}) is None
    for event, index in [("$e", 0), ("$e", 3)]:
        assert split_id(posted_id(event, index)) == (event, index)
    assert posted_id("$e", 0) == "$e" and split_id("$e|x") == ("$e", 0)


def test_reactions_are_bounded_per_user_and_told_once_per_burst():
    rel = Relations(keep=16)
    results = [rel.reaction_allowed("@a:hs", "!r") for _ in range(40)]
    allowed = [ok for ok, _ in results]
    assert allowed[:20] == [True] * 20 and not any(allowed[21:])
    assert [tell for _, tell in results].count(True) == 1
    assert rel.reaction_allowed("@b:hs", "!r")[0]  # per user


def test_pending_texts_are_taken_in_order_and_dropped_with_their_room():
    rel = Relations()
    for n in range(3):
        rel.queued("A", f"c{n}", f"t{n}")
    rel.queued("B", None, "b")
    assert [p.ref for p in rel.take("A", 2)] == ["c0", "c1"]
    rel.drop_room("A", lambda room: room)
    assert rel.take("A", 5) == [] and [p.text for p in rel.take("B", 1)] == ["b"]
    assert rel.pending == {}


def test_rendered_rich_contents_never_mention_and_never_take_markup():
    base = render.message("<b>hi</b> @room", "Stranger")[0]
    edit = render.edit(base, "$t")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$t"}
    assert edit["m.mentions"] == {} and edit["m.new_content"]["m.mentions"] == {}
    assert edit["body"] == "* Stranger: <b>hi</b> @room" and "m.relates_to" not in edit["m.new_content"]
    assert edit["m.new_content"]["formatted_body"] == "<b>Stranger:</b> &lt;b&gt;hi&lt;/b&gt; @room"
    reply = render.replying(render.ghost_message("answer")[0], "$q", "line\none <mx-reply>")
    assert reply == {"msgtype": "m.text", "body": "> line one <mx-reply>\n\nanswer", "m.mentions": {},
                     "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}}
    bot_reply = render.replying(base, "$q", "<i>q</i>")
    assert bot_reply["formatted_body"].startswith("<blockquote>&lt;i&gt;q&lt;/i&gt;</blockquote><b>Stranger:</b>")
    assert render.reaction("$t", render.reaction_key(" 👍\n\u202e ")) == {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$t", "key": "👍"}, "m.mentions": {}}
    # in a thread: an edit and a reaction keep their own relation; a reply keeps m.in_reply_to
    assert render.wire(edit, "$root") is edit
    assert render.wire(reply, "$root")["m.relates_to"] == {"rel_type": "m.thread", "event_id": "$root",
                                                           "is_falling_back": False, "m.in_reply_to": {"event_id": "$q"}}
    image = render.image({"url": "mxc://hs/new"}, "image/png", 3, 4, 99, "Stranger 1", ghost=False)
    assert image["body"] == "Stranger 1: image.png" and image["url"] == "mxc://hs/new" and image["m.mentions"] == {}
