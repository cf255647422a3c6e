"""`stranger-bridge mod ban|unban|list|log`: moderation on the store (SQLite file or Redis) of running or stopped daemons."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from ..store import SharedStateFile, SQLiteStore, Store, StoreError, StoreURL, held_by_a_daemon, open_tool_store
from .config import PolicySection
from .sanctions import Sanctions
from .subjects import SubjectError, subject_key
from .timespan import format_duration, parse_duration

__all__ = ["ModError", "add_mod_parser", "mod_command", "run_mod"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


class ModError(ValueError):
    """A mod command that cannot run (bad subject or duration, no state file); the CLI prints it."""


def add_mod_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `mod` command and its subcommands to the CLI's subparsers."""
    mod = sub.add_parser(
        "mod",
        help="bans and the moderation log, on the daemons' store (running or not)",
        description="Exit status: 0 done, 1 nothing to unban, 2 bad input or config.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, help="TOML config file (its [bridge] store or state is the store used)")
    actions = mod.add_subparsers(dest="mod_command", required=True)
    ban = actions.add_parser(
        "ban", parents=[common],
        help="ban PLATFORM:USER (discord:USER_ID, matrix:@user:server, matrix:*:SERVER for a whole server, web:KEY)",
    )  # fmt: skip
    ban.add_argument("subject")
    ban.add_argument("--for", dest="duration", help="how long: 90s, 15m, 1h, 7d (default: until unbanned)")
    ban.add_argument("--reason", default="", help="shown to the banned user when they try to start")
    unban = actions.add_parser("unban", parents=[common], help="lift a ban")
    unban.add_argument("subject")
    actions.add_parser("list", parents=[common], help="active bans and strikes")
    log = actions.add_parser("log", parents=[common], help="the moderation log, newest first")
    log.add_argument("--limit", type=int, default=50)
    return mod


def mod_command(args: argparse.Namespace, url: StoreURL, prefix: str, policy: PolicySection, out: TextIO) -> int:
    """Run a parsed `mod` command on the store `url` names; raise ModError for problems to print."""
    if getattr(args, "subject", None) is not None:
        _key(args.subject)  # bad input is told before the store is looked at
    if getattr(args, "duration", None) is not None:
        _duration(args.duration)
    if url.is_redis:
        # Shared with the running instances, which read bans from the store at every start.
        return asyncio.run(_on_redis(url, prefix, args, policy, out))
    state = url.path
    assert state is not None
    if not Path(state).exists():
        raise ModError(f"{state}: no state file here (is [bridge] state in the config right?)")
    try:
        # A stopped daemon's file is locked for the time of the command; a running one's is
        # shared with it (it reads bans from the store at every start, so it sees the change).
        store: Store = SharedStateFile(state) if held_by_a_daemon(state) else SQLiteStore(state)
    except StoreError as exc:
        raise ModError(str(exc)) from None
    return asyncio.run(_run_closing(store, args, policy, out))


async def _on_redis(url: StoreURL, prefix: str, args: argparse.Namespace, policy: PolicySection, out: TextIO) -> int:
    try:
        store = await open_tool_store(url, prefix=prefix)
    except StoreError as exc:
        raise ModError(str(exc)) from None
    return await _run_closing(store, args, policy, out)


async def _run_closing(store: Store, args: argparse.Namespace, policy: PolicySection, out: TextIO) -> int:
    try:
        return await run_mod(store, args, policy, out)
    finally:
        await store.close()


async def run_mod(store: Store, args: argparse.Namespace, policy: PolicySection, out: TextIO) -> int:
    """The logic of each `mod` subcommand, on any store."""
    sanctions = Sanctions.from_config(store, policy)
    now = time.time()
    match args.mod_command:
        case "ban":
            key = _key(args.subject)
            duration = None if args.duration is None else _duration(args.duration)
            ban = await sanctions.ban(key, duration, args.reason)
            print(f"banned {key} {_until(ban.until, now)}" + (f": {ban.reason}" if ban.reason else ""), file=out)
            return EXIT_OK
        case "unban":
            key = _key(args.subject)
            if await sanctions.unban(key):
                print(f"unbanned {key}", file=out)
                return EXIT_OK
            print(f"{key} was not banned", file=out)
            return EXIT_NOT_FOUND
        case "list":
            rows = await sanctions.listing()
            if not rows:
                print("no bans or strikes", file=out)
            for key, ban, strikes in sorted(rows):
                status = f"banned {_until(ban.until, now)}" if ban else "not banned"
                reason = f": {ban.reason}" if ban and ban.reason else ""
                print(f"{key}  {status}  strikes: {strikes}{reason}", file=out)
            return EXIT_OK
        case "log":
            records = await sanctions.log_records(limit=max(1, args.limit))
            if not records:
                print("the moderation log is empty", file=out)
            for r in records:
                fields = [_stamp(r.time), r.action, r.subject or "(stranger without a key)"]
                if r.by:
                    fields.append(f"by {r.by}")
                print("  ".join(fields) + (f": {r.reason}" if r.reason else ""), file=out)
            return EXIT_OK
    raise ModError(f"unknown mod command {args.mod_command!r}")


def _key(subject: str) -> str:
    try:
        return subject_key(subject)
    except SubjectError as exc:
        raise ModError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise ModError(f"--for: {exc}") from None
    if duration == 0:
        raise ModError("--for: a ban needs a duration above zero")
    return duration


def _until(until: float | None, now: float) -> str:
    if until is None:
        return "until unbanned"
    return f"until {_stamp(until)} ({format_duration(until - now)} left)"


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
