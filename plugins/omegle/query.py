"""The Omegle protocol's /start request, pure: a randid and the query string of a user's Start."""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlencode

from bridge.events import Mode, Start

__all__ = ["RANDID_ALPHABET", "random_id", "start_params", "start_query"]

RANDID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def random_id(choice=secrets.choice) -> str:
    """An 8-character `randid` from Omegle's alphabet (no 0, 1, I, O)."""
    return "".join(choice(RANDID_ALPHABET) for _ in range(8))


def start_params(
    start: Start,
    randid: str,
    *,
    caps: str | None = "recaptcha2",
    firstevents: bool = True,
) -> list[tuple[str, str]]:
    """The /start query parameters for a user's Start, in python-omegle's order.

    Random with interests sends `topics` (a JSON array); answer mode (or `answer_questions`)
    sends `wantsspy=1`; ask mode sends `ask=<question>`. Group mode has no Omegle equivalent:
    the caller refuses it before asking.
    """
    params: list[tuple[str, str]] = []
    if caps:
        params += [("caps", caps), ("rcs", "1")]
    if firstevents:
        params.append(("firstevents", "1"))
    params += [("randid", randid), ("lang", start.language or "en")]
    if start.mode is Mode.ASK:
        params.append(("ask", start.question or ""))
    elif start.mode is Mode.ANSWER or start.answer_questions:
        params.append(("wantsspy", "1"))
    elif start.interests:
        params.append(("topics", json.dumps(list(start.interests), ensure_ascii=False, separators=(",", ":"))))
    return params


def start_query(start: Start, randid: str, **options) -> str:
    """The /start query string (without the leading "?"); see `start_params`."""
    return urlencode(start_params(start, randid, **options))
