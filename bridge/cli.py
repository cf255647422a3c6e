"""Command line: `stranger-bridge run`, `check-config`, `status` and `mod`; the only place that exits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
import sys
from pathlib import Path

from .app import Bridge, PlatformCredentialsError, StartError
from .config import ConfigError, load_config
from .logsetup import setup_logging
from .notify import Notifier
from .policy.mod_cli import ModError, add_mod_parser, mod_command
from .status import EXIT_UNKNOWN, query_status, render_status
from .store import StoreError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FAILURE = 1
NOFILE_CEILING = 1 << 20  # open files asked for when the hard limit is "unlimited"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stranger-bridge` console script and of `python -m bridge`."""
    parser = argparse.ArgumentParser(prog="stranger-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, help="TOML config file (default: the embedded hub and web page)")
    check = sub.add_parser("check-config", help="validate a config file and print OK or every error")
    check.add_argument("-c", "--config", type=Path)
    status = sub.add_parser(
        "status",
        help="show a running daemon's health (through [bridge] metrics_bind) or, when stopped, what its state file holds",
        description="Exit status: 0 healthy, 1 degraded (or starting, stopping, not answering), 2 bad config, "
        "3 not running, 4 unknown (no [bridge] metrics_bind to ask).",
    )
    status.add_argument("-c", "--config", type=Path)
    status.add_argument("--json", action="store_true", help="print the status as one JSON object")
    add_mod_parser(sub)
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check-config":
        print("OK")
        return EXIT_OK

    if args.command == "status":
        try:
            report, code = query_status(config)
        except StoreError as exc:
            print(f"status unknown: {exc}", file=sys.stderr)
            return EXIT_UNKNOWN
        print(render_status(report, as_json=args.json))
        return code

    if args.command == "mod":
        try:
            return mod_command(args, config.bridge.store_url, config.bridge.store_prefix, config.policy, sys.stdout)
        except ModError as exc:
            print(f"mod: {exc}", file=sys.stderr)
            return EXIT_CONFIG

    setup_logging(config.bridge.log_format, config.bridge.log_level)
    raise_open_files_limit()
    try:
        asyncio.run(_run(Bridge(config, notifier=Notifier.from_env())))
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except PlatformCredentialsError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except StartError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def raise_open_files_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd's default soft limit is 1,024), logged once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays at %d: raising it to %d failed: %s", soft, target, exc)
            return
        log.info("open files limit raised from %d to %d", soft, target)
    else:
        log.info("open files limit: %s", "unlimited" if soft == resource.RLIM_INFINITY else soft)


async def _run(bridge: Bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    await bridge.run(stop)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s received: shutting down", sig.name)
    stop.set()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
