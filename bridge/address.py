"""`host:port` listen addresses as written in the config ("[::1]:9108" for IPv6)."""

from __future__ import annotations

__all__ = ["connect_host", "split_bind"]


def split_bind(bind: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{bind!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise ValueError(f"{bind!r}: port out of range")
    return host, number


def connect_host(host: str) -> str:
    """Where a local client reaches a listener bound to `host` (a wildcard means this machine)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
