"""The opaque per-person key a platform hands to the core: stable, never shown, never sent anywhere."""

from __future__ import annotations

import hashlib

__all__ = ["user_key"]


def user_key(platform: str, native_id: str | int) -> str:
    """`platform:` and 16 hex digits of SHA-256 over the platform's own user id (Discord snowflake, mxid).

    The hub keeps blocks and cool-downs under these keys, so the form must not change.
    """
    return f"{platform}:" + hashlib.sha256(str(native_id).encode()).hexdigest()[:16]
