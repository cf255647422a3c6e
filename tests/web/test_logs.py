"""Logs never hold request bytes (client ids, messages, bodies); protocol errors are counted, logged O(1)."""

from __future__ import annotations

import asyncio
import logging
import secrets

from tests.helpers import running

from .conftest import web_config

FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


async def raw(port: int, data: bytes) -> bytes:
    """Send bytes on a fresh connection; what the server answered before closing (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read(65536)
    finally:
        writer.close()


def malformed(token: str) -> list[bytes]:
    """Requests aiohttp's parser refuses, each carrying `token` where an id or a message would be."""
    return [
        f"{token} /start HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # bad method (the first request)
        f"GET /events HTTP/1.1\r\nHost: x\r\n\r\n{token} /send HTTP/1.1\r\n\r\n".encode(),  # bad method, second
        f"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 1{token}\r\n\r\nid={token}".encode(),
        f"POST /send?id={token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz{token}\r\n".encode(),
        f"GET /start?topics={token}\x00 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"GET /start HTTP/1.1\r\nHost: x\r\nX-{token}: " .encode() + b"a" * 10_000 + b"\r\n\r\n",
        f"GET /{token}" .encode() + b"b" * 10_000 + b" HTTP/1.1\r\n\r\n",
        f"POST /send HTTP/1.1\r\nHost: x\r\nBad Header {token}\r\n\r\n".encode(),
        f"GET /start HTTP/9.{token}\r\n\r\n".encode(),
    ]


def records_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(FORMAT.format(r) for r in records)


async def test_malformed_requests_leave_no_trace_of_their_bytes_in_logs(caplog):
    caplog.set_level(logging.DEBUG)
    token = secrets.token_hex(12)
    async with running(web_config()) as bridge:
        web = bridge.platforms["web"]
        for data in malformed(token):
            answer = await raw(web.port, data)
            assert answer[:9] in (b"HTTP/1.0 ", b"HTTP/1.1 ") and answer[9:10] == b"4", (data[:60], answer[:80])
        errors = sum(v for (name, _), v in web.metrics.counters.items() if name == "http_errors")
        assert errors >= len(malformed(token))
    assert caplog.records, "nothing was logged at all: the test would prove nothing"
    assert token not in records_text(caplog.records)
    assert any("http_errors" in r.getMessage() for r in caplog.records)  # the errors were said, once


async def test_a_thousand_bad_requests_make_a_bounded_number_of_log_lines(caplog):
    caplog.set_level(logging.DEBUG)
    async with running(web_config()) as bridge:
        web = bridge.platforms["web"]
        caplog.clear()
        gate = asyncio.Semaphore(50)

        async def bad(i: int) -> None:
            async with gate:
                await raw(web.port, f"BAD{i} /x HTTP/1.1\r\n\r\n".encode())

        await asyncio.gather(*(bad(i) for i in range(1000)))
        errors = {labels: v for (name, labels), v in web.metrics.counters.items() if name == "http_errors"}
        assert sum(errors.values()) == 1000, errors
        lines = [r for r in caplog.records if not r.name.startswith("bridge.")]
    assert len(lines) <= 3, records_text(lines)

