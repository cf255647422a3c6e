"""Command line: `stranger-bridge run` and `stranger-bridge check-config`; the only place that exits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .app import Bridge, PlatformCredentialsError, PlatformStartError
from .config import ConfigError, load_config
from .logsetup import setup_logging
from .store import StoreError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FAILURE = 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stranger-bridge` console script and of `python -m bridge`."""
    parser = argparse.ArgumentParser(prog="stranger-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, help="TOML config file (default: the embedded hub and web page)")
    check = sub.add_parser("check-config", help="validate a config file and print OK or every error")
    check.add_argument("-c", "--config", type=Path)
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

    setup_logging(config.bridge.log_format, config.bridge.log_level)
    try:
        asyncio.run(_run(Bridge(config)))
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except PlatformCredentialsError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except PlatformStartError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    return EXIT_OK


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
