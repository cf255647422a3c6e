"""Stable anonymous web identities: a per-browser key in an HMAC-signed cookie, else a keyed hash of a coarse address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bridge.abc import KeyValue
from bridge.bucket import TokenBucket
from bridge.identity import user_key

__all__ = ["ADDRESS_PLATFORM", "COOKIE", "Identities", "Identity", "coarse_address"]

log = logging.getLogger(__name__)

COOKIE = "sbkey"  # the per-browser key's cookie: "ID.SIGNATURE"
STATE_KEY = "identity_secrets"  # the platform's store key of the signing secrets
ADDRESS_PLATFORM = "webaddr"  # user keys of clients without a cookie: webaddr:HASH
ID_BYTES = 16  # 128 random bits per browser key
MAX_BUCKETS = 10_000  # hashed addresses whose key minting is tracked (the least recent go first)
DAY = 86_400.0


def coarse_address(address: str) -> str:
    """The network an address counts as: its /24 (IPv4) or /48 (IPv6); an unparsable one as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: the user key for `Start.user`, and a cookie to set (None: keep what it has)."""

    user: str
    cookie: str | None = None


class Identities:
    """Signs and checks browser keys, hashes addresses, and limits how many new keys an address gets.

    The signing secret lives in the platform's store, is made on first start and replaced every
    `rotation` seconds; a cookie signed with the previous secret is still taken (and re-signed), so
    a key lives as long as its browser comes back within one rotation period. The address secret is
    never rotated: a ban on a hashed address must outlive a rotation. Nothing here keeps a raw
    address or a cookie's value: buckets are indexed by the keyed hash.
    """

    def __init__(
        self, state: KeyValue, *, rotation: float, mint_rate: float, mint_burst: int, address_keys: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.state = state
        self.rotation = rotation
        self.mint_rate = mint_rate  # new keys per second per hashed address, sustained
        self.mint_burst = mint_burst
        self.address_keys = address_keys
        self.clock = clock
        self._current = b""
        self._previous: bytes | None = None
        self._rotated = 0.0
        self._address = b""
        self._unsaved = False  # made here on first start, not in the store yet
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return bool(self._current)

    async def load(self) -> None:
        """Read the secrets from the store (making them on first start), rotating if due."""
        raw = await self.state.get(STATE_KEY)
        self._take(raw)
        await self.rotate_if_due()

    async def refresh(self) -> None:
        """Several instances share the secrets (Redis mode): take what another one made or rotated
        since (two that started or rotated at the same moment agree within one sweep)."""
        raw = await self.state.get(STATE_KEY)
        if raw:
            self._take(raw)

    def _take(self, raw: str | None) -> None:
        record = json.loads(raw) if raw else None
        if record is None:
            self._current, self._previous = secrets.token_bytes(32), None
            self._address, self._rotated = secrets.token_bytes(32), self.clock()
            self._unsaved = True
        else:
            self._current = bytes.fromhex(record["current"])
            self._previous = bytes.fromhex(record["previous"]) if record.get("previous") else None
            self._address = bytes.fromhex(record["address"])
            self._rotated = float(record["rotated"])

    async def rotate_if_due(self) -> bool:
        """Replace the signing secret once a rotation period has passed; True if it did."""
        if self._unsaved:
            self._unsaved = False
            await self._save()
            log.info("web: made new identity secrets")
        if self.clock() - self._rotated < self.rotation:
            return False
        self._previous, self._current = self._current, secrets.token_bytes(32)
        self._rotated = self.clock()
        await self._save()
        log.info("web: rotated the cookie signing secret")
        return True

    async def _save(self) -> None:
        record = {
            "current": self._current.hex(), "previous": self._previous.hex() if self._previous else None,
            "address": self._address.hex(), "rotated": self._rotated,
        }  # fmt: skip
        await self.state.set(STATE_KEY, json.dumps(record))

    # ---- keys --------------------------------------------------------------------------------

    def _sign(self, secret: bytes, ident: str) -> str:
        return _b64(hmac.new(secret, ident.encode(), hashlib.sha256).digest()[:18])

    def _verify(self, value: str | None) -> tuple[str, bool] | None:
        """The browser id in a cookie value and whether it is signed with the current secret."""
        if not value or len(value) > 64 or value.count(".") != 1:
            return None
        ident, signature = value.split(".")
        for secret, current in ((self._current, True), (self._previous, False)):
            if secret and hmac.compare_digest(self._sign(secret, ident), signature):
                return ident, current
        return None

    def address_hash(self, address: str) -> str:
        """The keyed hash of the address's network (never the address itself)."""
        return hmac.new(self._address, coarse_address(address).encode(), hashlib.sha256).hexdigest()

    def address_key(self, address: str) -> str:
        """The user key of a client known only by its address: webaddr: and 16 hex digits."""
        return user_key(ADDRESS_PLATFORM, self.address_hash(address))

    def cookie_key(self, value: str | None) -> str | None:
        """The user key a valid cookie value carries, or None."""
        found = self._verify(value)
        return None if found is None else user_key("web", found[0])

    def for_protocol(self, cookie: str | None, address: str, client_key: str) -> tuple[str, str | None]:
        """The (user key, pairing key) of an Omegle-protocol start: the browser's key if it sends a
        valid cookie (our page; no separate pairing key), else its hashed address network as the
        user key (other clients send no cookies: bans, strikes and blocks reach them) with the
        client's own key as the pairing key, so clients of one network, such as all the users of a
        federated bridge, still meet one another. With address_keys off, the client's own key only."""
        found = self.cookie_key(cookie)
        if found is not None:
            return found, None
        own = f"web:{client_key[:16]}"
        return (self.address_key(address), own) if self.address_keys else (own, None)

    async def for_page(self, cookie: str | None, address: str) -> Identity:
        """The identity of a browser loading a page: its key (re-signed when signed with the
        previous secret), else a new key if its address may still mint one, else its hashed address."""
        found = self._verify(cookie)
        if found is not None:
            ident, current = found
            return Identity(user_key("web", ident), None if current else self._cookie(ident))
        if not await self._may_mint(self.address_hash(address)):
            return Identity(self.address_key(address))
        ident = _b64(secrets.token_bytes(ID_BYTES))
        return Identity(user_key("web", ident), self._cookie(ident))

    def _cookie(self, ident: str) -> str:
        return f"{ident}.{self._sign(self._current, ident)}"

    async def _may_mint(self, hashed: str) -> bool:
        # Behind a load balancer every instance counts an address's new keys together (a shared
        # store); a store of one process leaves it to the buckets here.
        shared = await self.state.spend_shared(f"mint:{hashed}", self.mint_rate, self.mint_burst)
        if shared is not None:
            return shared == 0.0
        bucket = self._buckets.get(hashed)
        if bucket is None:
            bucket = self._buckets[hashed] = TokenBucket(self.mint_rate, self.mint_burst)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(hashed)
        return bucket.allow()
