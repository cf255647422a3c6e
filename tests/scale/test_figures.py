"""Two daemons on one Redis: the web page's online count is everyone's on every instance, `status` and
/status label this instance's figures and add the sum of all live instances, and a dead one stops counting."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from tests.web.client import RawClient
from tests.web.test_page import FLAGS, chromium

from .daemon import ROOT, Daemon, pair_web


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def page_count(http, d: Daemon) -> int:
    """The count the page shows: what the instance's Omegle-protocol /status answers."""
    async with http.get(d.url + "/status") as response:
        return int((await response.json())["count"])


async def until_count(http, d: Daemon, expected: int, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):  # the other instance's figures come with its next heartbeat
        while await page_count(http, d) != expected:
            await asyncio.sleep(0.1)


async def cli_status(d: Daemon, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "status", "-c", str(d.config), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_two_instances_count_everyone_online_and_label_their_own_status(tmp_path, redis_server, http):
    a, b = Daemon(tmp_path, redis_server.url, "a"), Daemon(tmp_path, redis_server.url, "b")
    try:
        await asyncio.gather(a.start(), b.start())
        await pair_web(http, a, b)  # one chatting on each instance
        z = RawClient(http, b.url)
        await z.start()
        await z.until("waiting")  # and one waiting on b
        for d in (a, b):
            await until_count(http, d, 3)  # everyone, whichever instance answers
        async with async_playwright() as pw:  # the page served by a shows it
            browser = await pw.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
            try:
                page = await browser.new_page()
                await page.goto(a.url + "/")
                await expect(page.locator("#count")).to_have_text("3", timeout=10_000)
            finally:
                await browser.close()

        report = json.loads(await cli_status(a, "--json"))
        assert report["instance"] == "a" and report["sessions"] == {"web": {"chatting": 1}}
        every = report["all_instances"]
        assert sorted(every["instances"]) == ["a", "b"] and every["online"] == 3
        assert every["instances"]["a"]["online"] == 1 and every["instances"]["b"]["online"] == 2
        assert every["waiting"]["random"] == 1 and report["waiting"]["random"] == 0  # z waits on b
        text = await cli_status(b)
        assert "sessions (this instance, b): web: 1 chatting, 1 searching" in text
        assert "waiting (this instance, b): 0 answer, 0 ask, 0 group, 1 random" in text
        assert "all 2 live instances (a, b): 3 online, waiting: 0 answer, 0 ask, 0 group, 1 random" in text

        await b.kill()  # b's figures expire with its lease; a's chat ends once b is noticed dead
        await until_count(http, a, 0)
        report = json.loads(await cli_status(a, "--json"))
        assert list(report["all_instances"]["instances"]) == ["a"] and report["all_instances"]["online"] == 0
    finally:
        await asyncio.gather(a.stop(), b.stop())
