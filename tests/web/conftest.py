"""Fixtures: a running bridge with the web platform on a free port, the hub, and a recording platform."""

from __future__ import annotations

import aiohttp
import pytest

from tests.helpers import RECORDING, running


def web_config(**web: object) -> dict:
    """Bridge config: web on 127.0.0.1:0 (short poll window), a recording platform, the hub."""
    # address_keys off: each raw client from 127.0.0.1 is its own person to the start throttle and
    # bans (tests of address keys turn it on)
    table = {"plugin": "web", "bind": "127.0.0.1:0", "poll_window": 2.0, "address_keys": False, **web}
    return {
        "platforms": {"web": table, "rec": {"plugin": RECORDING}},
        "backends": {"hub": {"plugin": "hub", "interest_fallback": 30.0, "repair_cooldown": 0.0}},
    }


@pytest.fixture
async def bridge():
    async with running(web_config()) as instance:
        # A closed no-JS stream leaves soon (tests wait on it), yet a loaded machine still follows a
        # start's redirect in time (0.2 s was sometimes too short: "This chat has ended").
        instance.platforms["web"].nojs_grace = 1.0
        instance.platforms["web"].nojs_redraw_gap = 0.0  # redraw at once (one test checks the gap)
        yield instance


@pytest.fixture
def web(bridge):
    return bridge.platforms["web"]


@pytest.fixture
async def http():
    # unsafe: keep cookies of an IP-address host (the no-JS chat's cookie on 127.0.0.1)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15), cookie_jar=jar) as session:
        yield session
