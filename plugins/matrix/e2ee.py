"""Whether the bot encrypts in this configuration, the nio client options for it, and what users are told about it."""

from __future__ import annotations

from typing import Any

from nio.crypto import ENCRYPTION_ENABLED

from .config import MatrixConfig

__all__ = ["ENCRYPTION_NOTE", "client_options", "enabled", "refusal_reason"]

# Said in the help notice of every room and in the README: what users see of the bot's device.
ENCRYPTION_NOTE = (
    "Encrypted rooms work. This bot's device cannot cross-sign itself (matrix-nio has no cross-signing), "
    "so Element marks its messages “Encrypted by a device not verified by its owner”; clients set to "
    "send only to verified devices do not encrypt for it, and the bot then cannot read (or relay) their messages."
)
GHOST_REFUSAL = (
    "This bridge runs in ghost mode (each stranger is its own Matrix user), and its ghosts cannot hold "
    "encryption keys, so it does not join encrypted rooms. Invite it to an unencrypted room."
)
OFF_REFUSAL = "Encryption is turned off for this bridge, so it does not join encrypted rooms. Invite it to an unencrypted room."
MISSING_REFUSAL = (
    "This bridge was installed without encryption support (matrix-nio[e2e]), so it does not join encrypted "
    "rooms. Invite it to an unencrypted room."
)



def enabled(cfg: MatrixConfig) -> bool:
    """True when the bot encrypts: sync mode with `encryption` on and matrix-nio's e2e extra installed."""
    return cfg.encryption and cfg.appservice is None and ENCRYPTION_ENABLED


def refusal_reason(cfg: MatrixConfig) -> str:
    """The reason an inviter reads when the bot refuses an encrypted room."""
    if cfg.appservice is not None:
        return GHOST_REFUSAL
    return MISSING_REFUSAL if cfg.encryption else OFF_REFUSAL


def client_options(cfg: MatrixConfig) -> dict[str, Any]:
    """The AsyncClientConfig settings for encryption (nio's key store, `plugins.matrix.keystore`).

    The store path is left empty here, so nio's password login does not open the store itself:
    `plugins.matrix.crypto.Crypto.open` checks the file first, then sets the path and loads it.
    """
    if not enabled(cfg):
        return {"encryption_enabled": False}
    from .keystore import BotKeyStore  # needs the e2e extra (peewee)

    return {"encryption_enabled": True, "store": BotKeyStore}
