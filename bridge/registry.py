"""Plugin registry: built-in names, the `stranger_bridge.plugins` entry points, and "pkg.module:Class"."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import TypeVar

from .abc import Backend, Platform

__all__ = ["BUILTIN_BACKENDS", "BUILTIN_PLATFORMS", "PluginError", "load_backend", "load_platform"]

log = logging.getLogger(__name__)

T = TypeVar("T", Platform, Backend)

ENTRY_POINT_GROUP = "stranger_bridge.plugins"

# The core names plugins only as strings, so a Matrix-only install never imports discord.py.
BUILTIN_PLATFORMS: dict[str, str] = {
    "discord": "plugins.discord.platform:DiscordPlatform",
    "matrix": "plugins.matrix.platform:MatrixPlatform",
    "web": "plugins.web.platform:WebPlatform",
}
BUILTIN_BACKENDS: dict[str, str] = {
    "hub": "plugins.hub.backend:HubBackend",
    "omegle": "plugins.omegle.backend:OmegleBackend",
    "pychat": "plugins.pychat.backend:PychatBackend",
    "remandzana": "plugins.remandzana.backend:RemandzanaBackend",
    "roulette": "plugins.roulette.backend:RouletteBackend",
}


class PluginError(LookupError):
    """A plugin name that does not resolve to a usable class."""


def load_platform(name: str) -> type[Platform]:
    """Resolve a platform plugin name to its class."""
    return _load(name, BUILTIN_PLATFORMS, Platform)


def load_backend(name: str) -> type[Backend]:
    """Resolve a backend plugin name to its class."""
    return _load(name, BUILTIN_BACKENDS, Backend)


def _load(name: str, builtin: dict[str, str], base: type[T]) -> type[T]:
    kind = base.__name__.lower()
    target = builtin.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None and ":" in name:
        target = name
    if target is None:
        known = sorted(builtin) + sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise PluginError(f"unknown {kind} plugin {name!r} (known: {', '.join(known)}; or 'package.module:Class')")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{kind} plugin {name!r} cannot be imported: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{kind} plugin {name!r}: {target} is not a {base.__name__} class")
    return cls
