"""Logging the bot in: the nio client, access-token or password login, and the saved-login file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from bridge.abc import CredentialsError
from bridge.backoff import Backoff

from .config import MatrixConfig
from .e2ee import client_options

__all__ = [
    "LOGIN_BACKOFF",
    "REFUSED_LOGIN",
    "REFUSED_TOKEN",
    "check_token",
    "forget_saved_login",
    "login",
    "new_client",
    "read_saved_login",
    "write_saved_login",
]

log = logging.getLogger(__name__)

LOGIN_BACKOFF = Backoff(base=0.2, factor=2.5, cap=5.0, attempts=None)  # while the homeserver is away
# Login answers that no retry can change (a wrong password, a deactivated or unknown account).
REFUSED_LOGIN = frozenset({"M_FORBIDDEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME", "M_UNKNOWN_TOKEN"})
# Answers meaning the access token is gone for good (revoked, logged out, account deactivated).
REFUSED_TOKEN = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"})


def new_client(cfg: MatrixConfig) -> AsyncClient:
    """A nio client that leaves 429s and timeouts to us (merging and same-txn retries instead of blind sleeps)."""
    return AsyncClient(
        cfg.homeserver,
        cfg.user_id,
        device_id=cfg.device_id,
        config=AsyncClientConfig(
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=cfg.request_timeout,
            store_sync_tokens=False,
            **client_options(cfg),  # encryption on: nio's SQLite key store (opened by plugins.matrix.crypto)
        ),
    )


async def login(cfg: MatrixConfig, *, as_token: str | None = None, backoff: Backoff = LOGIN_BACKOFF) -> AsyncClient:
    """A client with an access token: the appservice's, the configured one, the saved one, or a new password login."""
    client = new_client(cfg)
    if as_token is not None or cfg.access_token is not None:
        client.access_token = as_token if as_token is not None else cfg.access_token.get_secret_value()
        client.user_id = cfg.user_id
        if cfg.device_id:
            client.device_id = cfg.device_id
        return client
    saved = read_saved_login(cfg)
    if saved:
        client.access_token = saved["access_token"]
        client.device_id = saved.get("device_id") or cfg.device_id
        client.user_id = cfg.user_id
        return client
    assert cfg.password is not None
    retry = backoff.retrying()
    while True:
        try:
            resp = await client.login(cfg.password.get_secret_value(), device_name="stranger-bridge")
        except Exception as exc:  # homeserver not up yet: keep trying, the daemon waits
            resp = exc
        if isinstance(resp, LoginResponse):
            break
        code = str(getattr(resp, "status_code", None) or "")
        if code in REFUSED_LOGIN:
            await client.close()
            message = getattr(resp, "message", None) or "refused"
            raise CredentialsError(
                f"the homeserver refused the password login of {cfg.user_id} ({code}: {message}); check the password"
            )
        log.warning("matrix login failed (%s); retrying", getattr(resp, "message", type(resp).__name__))
        asked = getattr(resp, "retry_after_ms", None)
        await retry.wait(asked / 1000 if asked else None)
    write_saved_login(cfg, resp.device_id, resp.access_token)
    return client


async def check_token(client: AsyncClient, cfg: MatrixConfig, *, backoff: Backoff = LOGIN_BACKOFF) -> None:
    """Ask whose token it is (ghost mode has no /sync that would find a refused as_token); waits while the server is away."""
    retry = backoff.retrying()
    while True:
        try:
            resp = await client.whoami()
        except Exception as exc:  # homeserver not up yet
            resp = exc
        if isinstance(resp, WhoamiResponse):
            return
        code = str(getattr(resp, "status_code", None) or "")
        if code in REFUSED_TOKEN:
            raise CredentialsError(f"the homeserver refused the as_token of {cfg.user_id} ({code}); check the registration")
        log.warning("matrix: checking the token failed (%s); retrying", code or type(resp).__name__)
        await retry.wait()


def read_saved_login(cfg: MatrixConfig) -> dict[str, str] | None:
    """The login a previous run saved in `store_path`, if it is this bot's and readable."""
    path = cfg.store_path
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("matrix: the saved login in store_path is unreadable; logging in again")
        return None
    if data.get("user_id") != cfg.user_id or not data.get("access_token"):
        return None
    return data


def forget_saved_login(cfg: MatrixConfig) -> bool:
    """Remove a saved login the homeserver refused; True when a password login can replace it."""
    path = cfg.store_path
    if cfg.password is None or path is None or not path.exists():
        return False
    path.unlink()
    return True


def write_saved_login(cfg: MatrixConfig, device_id: str, token: str) -> None:
    """Save a password login's token and device (mode 0600), so a restart reuses the same device."""
    path: Path | None = cfg.store_path
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user_id": cfg.user_id, "device_id": device_id, "access_token": token}, f)
