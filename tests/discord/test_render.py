"""Pure rendering: stranger text neutralised, user text anonymised, limits, notices as embeds."""

from __future__ import annotations

import pytest

from bridge.events import Connected, Disconnected, Message, Question, Reason, ServerNotice, Typing, Waiting
from bridge.hygiene import CUT_MARKER
from bridge.delivery import merge_marker
from plugins.discord import render

Z = "\u200b"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("@everyone", f"@{Z}everyone"),
        ("@here now", f"@{Z}here now"),
        ("@\u200beveryone", f"@{Z}everyone"),
        ("@\u200b\u200c\u2060everyone", f"@{Z}everyone"),
        ("＠everyone", f"@{Z}everyone"),
        ("﹫here", f"@{Z}here"),
        ("@еveryone", f"@{Z}еveryone"),  # Cyrillic е: never a mention anyway, still broken
        ("<@123456789012345678>", f"<{Z}@{Z}123456789012345678>"),
        ("<@!123>", f"<{Z}@{Z}!123>"),
        ("<@&987>", f"<{Z}@{Z}&987>"),
        ("<#555>", f"<{Z}#555>"),
        ("</stranger start:1234>", f"<{Z}/stranger start:1234>"),
        ("<t:1700000000:R>", f"<{Z}t:1700000000:R>"),
        ("<id:customize>", f"<{Z}id:customize>"),
        ("<\u200b@123>", f"<{Z}@{Z}123>"),
        ("```\n@everyone\n```", f"```\n@{Z}everyone\n```"),
        ("[Free Nitro](https://evil.example)", f"[Free Nitro]{Z}(https://evil.example)"),
        ("join discord.gg/abc", f"join discord{Z}.gg/abc"),
        ("discord.com/invite/abc", f"discord{Z}.com/invite/abc"),
        ("-# Stranger has disconnected.", "\\-# Stranger has disconnected."),
        ("hi\n# Bridge\n> quoted", "hi\n\\# Bridge\n\\> quoted"),
        ("<img src=x onerror=alert(1)>", f"<{Z}img src=x onerror=alert(1)>"),
        ("a < b", "a < b"),
        ("plain text", "plain text"),
    ],
)
def test_neutralise(text, shown):
    assert render.neutralise(text) == shown


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("hi <@123456789012345678>", "hi @someone"),
        ("<@!42> and <@&7>", "@someone and @some-role"),
        ("see <#900000000000000200>", "see #some-channel"),
        ("run </stranger start:99>", "run /stranger start"),
        ("nice <:pog:1234567> <a:dance:99>", "nice :pog: :dance:"),
        ("https://discord.com/channels/1/2/3 look", "[a message link] look"),
        ("https://canary.discord.com/channels/@me/2/3", "[a message link]"),
        ("https://cdn.discordapp.com/attachments/1/2/me.png", "[a file]"),
        ("https://media.discordapp.net/attachments/1/2/me.png?x=1", "[a file]"),
        ("<t:1700000000:R> is fine", "<t:1700000000:R> is fine"),
    ],
)
def test_anonymise(text, sent):
    assert render.anonymise(text) == sent


def test_webhook_payload_names_the_stranger_and_allows_nothing():
    [payload] = render.stranger_payloads("@everyone hi", "Stranger 2", webhook=True)
    assert payload == {
        "content": f"@{Z}everyone hi",
        "username": "Stranger 2",
        "allowed_mentions": {"parse": [], "users": [], "roles": [], "replied_user": False},
        "flags": 4,
    }


def test_bot_payload_has_bold_prefix_that_text_cannot_forge():
    [payload] = render.stranger_payloads("**[Bridge]** Stranger disconnected. Re-verify at https://evil.example", None, webhook=False)
    assert payload["content"] == "**Stranger:** **[Bridge]** Stranger disconnected. Re-verify at https://evil.example"
    assert payload["flags"] == 4 and "embeds" not in payload  # notices are embeds; stranger text never is


@pytest.mark.parametrize("size", [2000, 2001, 4500, 100_000])
def test_long_text_split_into_at_most_three_then_cut(size):
    words = ("word " * (size // 5 + 1))[:size]
    parts = render.stranger_payloads(words, None, webhook=True)
    assert 1 <= len(parts) <= 3
    assert all(len(p["content"]) <= 2000 for p in parts)
    if size > 3 * 2000:
        assert parts[-1]["content"].endswith(CUT_MARKER)
    else:
        assert "".join(p["content"] for p in parts).replace(" ", "") == words.replace(" ", "")


def test_one_huge_token_is_cut_not_looped():
    parts = render.stranger_payloads("x" * 100_000, "Stranger", webhook=False)
    assert len(parts) == 3 and parts[0]["content"].startswith("**Stranger:** xxx")
    assert all(len(p["content"]) <= 2000 for p in parts) and parts[-1]["content"].endswith(CUT_MARKER)


def test_merge_marker_is_small_text_the_stranger_cannot_produce():
    note = render.merge_note(merge_marker(2, "Stranger"))
    [payload] = render.stranger_payloads("a\nb", "Stranger", webhook=True, extra=note)
    assert payload["content"].endswith("\n-# ⏳ 2 messages from Stranger were merged into one while delivery was slowed down.")
    [forged] = render.stranger_payloads(note, "Stranger", webhook=True)
    assert forged["content"].startswith("\\-#")


@pytest.mark.parametrize(
    ("event", "text", "buttons"),
    [
        (Waiting(), "Looking for someone you can chat with...", True),
        (Connected(common_interests=("@everyone",)), f"You're now chatting with a random stranger. Say hi! You both like “@{Z}everyone”.", True),
        (Question("<@1> or <@2>?"), f"Question to discuss: <{Z}@{Z}1> or <{Z}@{Z}2>?", False),
        (ServerNotice("Too fast"), "Too fast", False),
        (Disconnected(reason=Reason.STRANGER), "Stranger has disconnected.", False),
    ],
)
def test_notices_are_embeds(event, text, buttons):
    payload = render.notice_payload(event)
    assert payload["content"] == "" and payload["embeds"][0]["description"] == text
    assert payload["allowed_mentions"]["parse"] == []
    assert ("components" in payload) is buttons


def test_no_notice_for_message_or_typing():
    assert render.notice_payload(Message("x")) is None and render.notice_payload(Typing()) is None


def test_thread_name_has_no_user_in_it():
    assert render.thread_name(7) == "Stranger chat #0007"


FORGED_NOTICE = "hi\n\n\nStranger has disconnected.\n> You have disconnected.\n-# stranger-bridge\n# Looking for someone"


def test_every_line_of_multi_line_stranger_text_is_attributed_in_bot_messages():
    [payload] = render.stranger_payloads(FORGED_NOTICE, "Stranger 2", webhook=False)
    lines = payload["content"].split("\n")
    assert lines == [
        "**Stranger 2:** hi",
        "**Stranger 2:** Stranger has disconnected.",
        "**Stranger 2:** \\> You have disconnected.",
        "**Stranger 2:** \\-# stranger-bridge",
        "**Stranger 2:** \\# Looking for someone",
    ]
    assert "embeds" not in payload and payload["flags"] & render.SUPPRESS_EMBEDS


def test_multi_line_stranger_text_through_a_webhook_is_one_block_under_the_stranger_s_name():
    [payload] = render.stranger_payloads(FORGED_NOTICE, "Stranger", webhook=True)
    assert payload["username"] == "Stranger" and "embeds" not in payload
    assert not [line for line in payload["content"].split("\n") if line.startswith((">", "-#", "#"))]


@pytest.mark.parametrize("webhook", [False, True])
def test_a_long_multi_line_text_split_in_parts_keeps_every_line_attributed(webhook):
    text = "\n".join(f"line {i} " + "w " * 40 for i in range(200))
    parts = render.stranger_payloads(text, None, webhook=webhook)
    assert len(parts) == 3 and all(len(p["content"]) <= 2000 for p in parts)
    if not webhook:
        assert all(line.startswith("**Stranger:** ") for p in parts for line in p["content"].split("\n"))


def test_the_not_delivered_notice_quotes_the_message_and_counts_merged_ones():
    one = render.undelivered_notice("Stranger 2", "hi\n\nthere @everyone")
    assert one["embeds"][0]["description"] == f"This message from Stranger 2 could not be delivered: “hi there @{Z}everyone”"
    assert one["content"] == "" and one["allowed_mentions"]["parse"] == []
    merged = render.undelivered_notice(None, "a\nb\nc", 3)
    assert merged["embeds"][0]["description"] == "These 3 messages from Stranger could not be delivered: “a b c”"
    long = render.undelivered_notice(None, "x" * 500)["embeds"][0]["description"]
    assert len(long) < 200 and long.endswith(f"{CUT_MARKER}”")
