"""Matrix transaction ids unique across restarts: a random install prefix and a persisted, block-reserved counter."""

from __future__ import annotations

import json
import secrets

from bridge.abc import KeyValue

__all__ = ["TXN_BLOCK", "TxnIds"]

TXN_BLOCK = 1000  # transaction ids reserved per state write


class TxnIds:
    """Transaction ids unique across restarts: a random install prefix and a persisted counter.

    Counters are reserved in blocks, so a restart skips at most one block and never reuses an
    id that Synapse may still remember for this device. Every id starts with "sb".
    """

    PREFIX = "sb"

    def __init__(self, state: KeyValue, *, block: int = TXN_BLOCK) -> None:
        self.state = state
        self.block = block
        self.prefix = ""
        self.next = 0
        self.reserved = 0

    async def load(self) -> None:
        """Take up the prefix and the counter a previous run reserved up to."""
        raw = await self.state.get("txn")
        data = json.loads(raw) if raw else {}
        self.prefix = data.get("prefix") or secrets.token_hex(6)
        self.next = self.reserved = int(data.get("reserved", 0))

    async def take(self) -> str:
        """A fresh transaction id (a state write once per block)."""
        key = self.take_reserved()
        while key is None:  # (again if others took the new block while its write was awaited)
            self.reserved = self.next + self.block
            await self.state.set("txn", json.dumps({"prefix": self.prefix, "reserved": self.reserved}))
            key = self.take_reserved()
        return key

    def take_reserved(self) -> str | None:
        """A fresh transaction id when the block has one left (no state write, no coroutine: every
        stranger message takes one), else None: then `take`."""
        n = self.next
        if n >= self.reserved:
            return None
        self.next = n + 1
        return f"{self.PREFIX}{self.prefix}.{n}"

    @classmethod
    def ours(cls, key: str) -> bool:
        """True for an id made here (an outbox item's default key is plain hex, never "sb…")."""
        return key.startswith(cls.PREFIX)
