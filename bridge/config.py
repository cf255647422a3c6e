"""Configuration: one TOML file plus STRANGER_BRIDGE_* environment overrides, validated per plugin."""

from __future__ import annotations

import json
import logging
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from .abc import Backend, Platform, PluginConfig, StrictModel
from .address import split_bind
from .policy.config import PolicySection
from .registry import PluginError, load_backend, load_platform
from .store.url import StoreURL, parse_store_url

__all__ = [
    "BridgeSection", "Config", "ConfigError", "DEFAULT_CONFIG", "ImageLimits", "default_instance", "load_config", "parse_config",
]

log = logging.getLogger(__name__)

# What `stranger-bridge run` uses with no file: the embedded hub and the built-in web page.
DEFAULT_CONFIG: dict[str, Any] = {
    "platforms": {"web": {"plugin": "web"}},
    "backends": {"hub": {"plugin": "hub"}},
}


_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_instance() -> str:
    """This machine's host name, made a valid instance name (two instances on one host need their own)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_")[:64]
    return name or "stranger-bridge"


class ConfigError(ValueError):
    """Every problem found in a configuration, each naming its key."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class ImageLimits(StrictModel):
    """[bridge.images]: limits on pictures (each platform switches them on for itself; off by default)."""

    max_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)  # a file larger than this is refused
    max_pixels: int = Field(16_777_216, ge=64, le=100_000_000)  # width x height; more is refused before decoding
    rate: float = Field(0.2, gt=0)  # pictures per second a person may sustain in one chat
    burst: int = Field(3, ge=1)


class BridgeSection(StrictModel):
    """The [bridge] table: settings of the core itself."""

    default_backend: str = "hub"
    state: Path = Path("stranger-bridge.sqlite3")  # SQLite file of sessions and plugin state
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    search_timeout: float = Field(300.0, gt=0)  # seconds searching before giving up with a notice
    typing_timeout: float = Field(10.0, gt=0)  # a user's Typing becomes StoppedTyping after this
    stranger_typing_timeout: float = Field(30.0, gt=0)  # likewise for a stranger's Typing
    typing_interval: float = Field(1.0, ge=0)  # at most one relayed Typing start per this, each way
    max_interests: int = Field(20, ge=0, le=100)
    max_interest_length: int = Field(64, ge=1, le=256)
    max_question_length: int = Field(500, ge=1, le=5000)
    max_message_length: int = Field(4000, ge=1, le=65536)  # user text; backends may allow less
    stranger_rate: float = Field(5.0, gt=0)  # messages per second a stranger may sustain
    stranger_burst: int = Field(20, ge=1)
    user_rate: float = Field(5.0, gt=0)
    user_burst: int = Field(20, ge=1)
    # Rich relay (edits, deletions, reactions, replies): messages remembered per side of a chat,
    # and how much is relayed about one message.
    refs_per_side: int = Field(256, ge=8, le=10_000)
    max_edits: int = Field(10, ge=0, le=1000)  # edits relayed per message; later ones are not
    max_reactions: int = Field(20, ge=0, le=1000)  # reaction changes relayed per message
    reaction_rate: float = Field(5.0, gt=0)  # reactions per second a person may sustain
    reaction_burst: int = Field(20, ge=1)
    images: ImageLimits = ImageLimits()
    inbox_size: int = Field(1000, ge=10)  # events queued per room before overflow notices
    deliver_attempts: int = Field(3, ge=1, le=10)
    shutdown_timeout: float = Field(5.0, gt=0)
    report_window: float = Field(300.0, gt=0)  # seconds after a chat ends during which "report" still reaches it
    report_records: int = Field(10_000, ge=0)  # ended chats kept for that, over all rooms at once
    # host:port of the core's own /metrics, /healthz and /status listener (`stranger-bridge status`
    # asks it); unset: no listener. Give a loopback host unless a scraper elsewhere must reach it.
    metrics_bind: str | None = None

    # Where sessions and plugin state live: unset, the SQLite file `state`; "sqlite:///path" (relative
    # to the config file; sqlite:////abs for an absolute path), or "redis://host:port/db" / "rediss://"
    # to share them between instances (a password from STRANGER_BRIDGE_REDIS_PASSWORD or the URL).
    store: str | None = Field(None, repr=False)  # may hold a password: never shown
    store_prefix: str = "stranger-bridge:"  # every Redis key starts with it; foreign keys under it are refused
    instance: str = Field(default_factory=default_instance)  # this instance's name (its lease in Redis)
    instance_lease: float = Field(10.0, ge=0.5, le=600)  # seconds without a heartbeat before others call it dead

    @field_validator("metrics_bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is not None:
            split_bind(value)
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None:
            parse_store_url(value)
        return value

    @field_validator("store_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not 1 <= len(value) <= 64 or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must be 1 to 64 printable characters without spaces")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _INSTANCE.match(value):
            raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @property
    def store_url(self) -> StoreURL:
        """The store to open: `store` parsed, or the SQLite file `state` when `store` is unset."""
        return parse_store_url(self.store) if self.store is not None else StoreURL("sqlite", path=self.state)


class _Raw(BaseSettings):
    """The file and environment merged, before each plugin table is validated."""

    model_config = SettingsConfigDict(
        env_prefix="STRANGER_BRIDGE_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    bridge: dict[str, Any] = {}
    platforms: dict[str, dict[str, Any]] = {}
    backends: dict[str, dict[str, Any]] = {}
    policy: dict[str, Any] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (given as init values), as operators expect.
        return env_settings, init_settings


@dataclass(frozen=True)
class Config:
    """A validated configuration: the core's settings and each plugin's own Config instance."""

    bridge: BridgeSection
    platforms: dict[str, PluginConfig] = field(default_factory=dict)
    backends: dict[str, PluginConfig] = field(default_factory=dict)
    platform_classes: dict[str, type[Platform]] = field(default_factory=dict)
    backend_classes: dict[str, type[Backend]] = field(default_factory=dict)
    source: Path | None = None
    policy: PolicySection = field(default_factory=PolicySection)  # [policy]: moderation

    def backend_for(self, platform: str) -> str:
        """The backend a platform's sessions use unless a Start names another."""
        return self.platforms[platform].backend or self.bridge.default_backend


def load_config(path: Path | str | None, *, env: bool = True) -> Config:
    """Read and validate `path` (None: embedded defaults) with environment overrides."""
    if path is None:
        return parse_config(DEFAULT_CONFIG, env=env)
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    if not data:
        raise ConfigError([f"{path}: the config file is empty; give it a [platforms.NAME] table, or run without -c for the defaults"])
    config = parse_config(data, env=env, base_dir=path.parent)
    return Config(**{**config.__dict__, "source": path})


def parse_config(data: dict[str, Any], *, env: bool = True, base_dir: Path | None = None) -> Config:
    """Validate a configuration given as a dict (the parsed TOML); raise ConfigError with every problem."""
    errors: list[str] = []
    unknown = sorted(set(data) - {"bridge", "platforms", "backends", "policy"})
    errors += [f"{key}: unknown table (expected bridge, platforms, backends, policy)" for key in unknown]
    known = {k: v for k, v in data.items() if k not in unknown}
    try:
        raw = _Raw(**known) if env else _Raw.model_construct(**{"bridge": {}, "platforms": {}, "backends": {}, "policy": {}, **known})
    except ValidationError as exc:
        raise ConfigError(errors + _format(exc)) from None
    except SettingsError as exc:  # a whole-table override (STRANGER_BRIDGE_BRIDGE='{...') that is not JSON
        raise ConfigError(errors + [_env_table_error(exc)]) from None

    bridge = _validate(BridgeSection, "bridge", raw.bridge, errors)
    if bridge is not None and base_dir is not None and not bridge.state.is_absolute():
        bridge = bridge.model_copy(update={"state": base_dir / bridge.state})
    if bridge is not None and base_dir is not None and bridge.store is not None and not bridge.store_url.is_redis:
        path = parse_store_url(bridge.store, base_dir).path
        bridge = bridge.model_copy(update={"store": f"sqlite:///{path}"})

    backends_raw = dict(raw.backends)
    default_backend = bridge.default_backend if bridge else "hub"
    if default_backend == "hub" and "hub" not in backends_raw:
        backends_raw["hub"] = {"plugin": "hub"}  # the embedded pool needs no configuration

    backend_classes: dict[str, type[Backend]] = {}
    backends: dict[str, PluginConfig] = {}
    for name, table in backends_raw.items():
        loaded = _plugin("backends", name, table, load_backend, errors)
        if loaded:
            backend_classes[name], backends[name] = loaded

    platform_classes: dict[str, type[Platform]] = {}
    platforms: dict[str, PluginConfig] = {}
    for name, table in raw.platforms.items():
        loaded = _plugin("platforms", name, table, load_platform, errors)
        if loaded:
            platform_classes[name], platforms[name] = loaded

    if bridge is not None and default_backend not in backends_raw:
        errors.append(f"bridge.default_backend: no [backends.{default_backend}] table")
    for name, cfg in platforms.items():
        if cfg.backend is not None and cfg.backend not in backends_raw:
            errors.append(f"platforms.{name}.backend: no [backends.{cfg.backend}] table")
    policy = _validate(PolicySection, "policy", _from_env_text(dict(raw.policy)), errors)
    if errors or bridge is None or policy is None:
        raise ConfigError(errors or ["bridge: invalid"])
    return Config(bridge, platforms, backends, platform_classes, backend_classes, policy=policy)


def _plugin(section, name, table, loader, errors):
    where = f"{section}.{name}"
    if not isinstance(table, dict):
        errors.append(f"{where}: must be a table")
        return None
    plugin = table.get("plugin", name)  # a table named after its plugin may omit `plugin`
    if not isinstance(plugin, str):
        errors.append(f"{where}.plugin: must be a string")
        return None
    try:
        cls = loader(plugin)
    except PluginError as exc:
        errors.append(f"{where}.plugin: {exc}")
        return None
    values = {k: _from_env_text(v) for k, v in {**table, "plugin": plugin}.items()}
    cfg = _validate(cls.Config, where, values, errors)
    return (cls, cfg) if cfg is not None else None


def _env_table_error(exc: SettingsError) -> str:
    found = re.search(r'field "(\w+)"', str(exc))
    key = found.group(1) if found else "environment"
    return f"{key}: the environment variable STRANGER_BRIDGE_{key.upper()} is not valid JSON (a table is written as {{...}})"


def _from_env_text(value: Any) -> Any:
    # Environment overrides arrive as text; lists and tables are written as JSON there.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _from_env_text(v) for k, v in value.items()}
    return value


def _validate(model, where, values, errors):
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors.extend(_format(exc, where))
        return None


def _format(exc: ValidationError, where: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = ".".join(p for p in (where, loc) if p)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif err["type"] == "missing":
            msg = "field required"
        if not loc and ": " in msg and msg.split(": ", 1)[0].isidentifier():
            # A model-level check that names its own field ("token: placeholder secret").
            field_name, msg = msg.split(": ", 1)
            key = ".".join(p for p in (where, field_name) if p)
        lines.append(f"{key}: {msg}" if key else msg)
    return lines
