"""`stranger-bridge status`: ask a running daemon's health listener, or read what a stopped one left."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from .address import connect_host, split_bind
from .app import LAST_RUN
from .config import Config
from .store import SQLiteStore

__all__ = ["EXIT_DEGRADED", "EXIT_HEALTHY", "EXIT_NOT_RUNNING", "EXIT_UNKNOWN", "query_status", "render_status"]

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1  # also starting, stopping, or a listener that does not answer
EXIT_NOT_RUNNING = 3
EXIT_UNKNOWN = 4  # no way to tell: no [bridge] metrics_bind
ASK_TIMEOUT = 5.0  # seconds the daemon has to answer /status


def query_status(config: Config) -> tuple[dict[str, Any], int]:
    """The status report and the exit code it means."""
    bind = config.bridge.metrics_bind
    if bind is None:
        report = _from_store(config)
        report["health"] = "unknown"
        where = report["note"] if config.bridge.store_url.is_redis else "this is the state file"
        report["note"] = f"no [bridge] metrics_bind is set, so a running daemon cannot be asked; {where}"
        return report, EXIT_UNKNOWN
    host, port = split_bind(bind)
    host = connect_host(host)
    url = f"http://[{host}]:{port}/status" if ":" in host else f"http://{host}:{port}/status"
    try:
        with urllib.request.urlopen(url, timeout=ASK_TIMEOUT) as response:
            report = json.loads(response.read())
    except ConnectionRefusedError:
        return _stopped(config, bind), EXIT_NOT_RUNNING
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return _stopped(config, bind), EXIT_NOT_RUNNING
        return {"running": None, "health": "not answering", "note": f"{bind}: {exc.reason}"}, EXIT_DEGRADED
    except (OSError, ValueError) as exc:  # a timeout, a reset, an answer that is not JSON
        return {"running": None, "health": "not answering", "note": f"{bind}: {exc}"}, EXIT_DEGRADED
    return report, EXIT_HEALTHY if report.get("health") == "healthy" else EXIT_DEGRADED


def _stopped(config: Config, bind: str) -> dict[str, Any]:
    report = _from_store(config)
    report["health"] = "not running"
    report["note"] = f"nothing listens on {bind}" + (f"; {report['note']}" if config.bridge.store_url.is_redis else "")
    return report


def _from_store(config: Config) -> dict[str, Any]:
    """Sessions a stopped daemon left (resumed or ended at its next start) and its last run's record."""
    url = config.bridge.store_url
    where = url.redacted() if url.is_redis else str(url.path)
    report: dict[str, Any] = {"running": False, "state": where, "sessions": {}, "errors": [], "last_run": None}
    if url.is_redis:
        report["sessions"] = None
        report["note"] = f"the store is Redis at {url.redacted()}: a stopped instance's sessions are not read from here"
        return report
    path = url.path
    assert path is not None
    if not path.exists():
        report["note"] = "no state file yet"
        return report
    sessions, last_run = asyncio.run(_read_store(SQLiteStore(path)))
    counts: Counter[tuple[str, str]] = Counter((record.room.platform, record.state) for record in sessions)
    for (platform, state), n in sorted(counts.items()):
        report["sessions"].setdefault(platform, {})[state] = n
    if last_run:
        report["last_run"] = {key: last_run.get(key) for key in ("started", "stopped", "pid")}
        report["errors"] = last_run.get("errors") or []
    return report


async def _read_store(store: SQLiteStore) -> tuple[list, dict[str, Any] | None]:
    try:
        sessions = await store.sessions()
        raw = await store.get(*LAST_RUN)
    finally:
        await store.close()
    try:
        last_run = json.loads(raw) if raw else None
    except ValueError:
        last_run = None
    return sessions, last_run if isinstance(last_run, dict) else None


def render_status(report: dict[str, Any], *, as_json: bool = False) -> str:
    """The report as an operator reads it (or as one JSON object)."""
    if as_json:
        return json.dumps(report, sort_keys=True, indent=2)
    running = bool(report.get("running"))
    lines = _running_lines(report) if running else _stopped_lines(report)
    # Several instances share the store: this one's figures are labelled, and their sum follows.
    every = report.get("all_instances") if running else None
    mine = f" (this instance, {report.get('instance')})" if every else ""
    label = f"sessions{mine}" if running else "sessions in the state file"
    if not running and report.get("sessions") is None:
        lines.append("sessions: not read (the store is Redis)")
    else:
        lines.append(f"{label}: {_sessions(report.get('sessions') or {})}")
    if running:
        lines.append(f"waiting{mine}: {_waiting(report.get('waiting') or {})}")
    if every:
        names = list(every.get("instances") or {})
        lines.append(f"all {len(names)} live instances ({', '.join(names)}): {every.get('online', 0)} online, "
                     f"waiting: {_waiting(every.get('waiting') or {})}")
    errors = report.get("errors") or []
    lines.append("last errors:" + ("" if errors else " none"))
    lines.extend(_error_line(entry) for entry in errors[-10:])
    return "\n".join(lines)


def _running_lines(report: dict[str, Any]) -> list[str]:
    head = f"stranger-bridge: running ({report.get('health')}), pid {report.get('pid')}"
    platforms = report.get("platforms") or {}
    ready = [f"{name} {'ready' if p.get('ready') else 'NOT READY'}" for name, p in platforms.items()]
    return [f"{head}, up {_duration(report.get('uptime', 0))}", "platforms: " + (", ".join(ready) or "none")]


def _stopped_lines(report: dict[str, Any]) -> list[str]:
    note = f" ({report['note']})" if report.get("note") else ""
    lines = [f"stranger-bridge: {report.get('health')}{note}"]
    last = report.get("last_run")
    if last:
        stopped = last.get("stopped")
        how = f"stopped {_when(stopped)}" if stopped else "did not stop cleanly (killed or crashed)"
        lines.append(f"last run: started {_when(last.get('started'))}, {how}")
    return lines


def _waiting(waiting: dict[str, int]) -> str:
    return ", ".join(f"{n} {mode}" for mode, n in sorted(waiting.items())) or "nobody"


def _sessions(sessions: dict[str, dict[str, int]]) -> str:
    parts = []
    for platform, states in sorted(sessions.items()):
        parts.append(f"{platform}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
    return "; ".join(parts) or "none"


def _error_line(entry: dict[str, Any]) -> str:
    what = entry.get("template") or "(message not kept)"
    extra = f" {entry['exception']}" if entry.get("exception") else ""
    times = f" (x{entry['count']})" if entry.get("count", 1) > 1 else ""
    return f"  {_when(entry.get('time'))} {entry.get('level')} {entry.get('logger')}: {what}{extra}{times}"


def _when(stamp: float | None) -> str:
    if not stamp:
        return "?"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"
