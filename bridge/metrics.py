"""Figures of the running bridge (counters, histograms, lazily collected gauges) in Prometheus form."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["CONTENT_TYPE", "Metrics", "counter_key"]

PREFIX = "stranger_bridge_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what `prometheus()` returns

# Upper bounds (seconds) of the histograms; a name not listed gets DEFAULT_BUCKETS.
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS: dict[str, tuple[float, ...]] = {"pairing_wait_seconds": WAIT_BUCKETS, "store_seconds": STORE_BUCKETS}

# HELP text of every figure the core and the built-in plugins count; others get a generic line.
HELP: dict[str, str] = {
    "backend_up": "1 when the backend reports its connection up, 0 when down.",
    "deliver_attempts": "Deliveries of an event to a platform tried, retries included.",
    "deliver_failures": "Deliveries given up after the last attempt, by platform and reason.",
    "deliver_retries": "Deliveries retried after a failed attempt, by platform and reason.",
    "errors": "Errors by kind (session, backend, deliver, platform).",
    "messages_relayed": "Messages relayed, by direction.",
    "pairing_wait_seconds": "Seconds from the start of a search until a stranger connected.",
    "platform_ready": "1 when the platform can deliver, 0 when it cannot (connecting, lost).",
    "queue_depth": "Items waiting in a queue, by owner and queue.",
    "reports": "Strangers reported by users.",
    "sessions": "Sessions by platform and state.",
    "store_seconds": "Seconds one call into the state store took, by operation.",
}

Labels = tuple[tuple[str, str], ...]
GaugeSource = Callable[[], dict[tuple[str, ...], float]]


def counter_key(name: str, **labels: str) -> tuple[str, Labels]:
    """The key of one counter series, for `Metrics.add` on a hot path (made once, not per event)."""
    return (name, tuple(sorted(labels.items())))


def _help(name: str) -> str:
    return HELP.get(name, f"stranger-bridge figure {name}.")


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class Metrics:
    """Written by the core and by plugins (`inc`, `observe`, `set_ready`), read by /metrics and status.

    Gauges that would cost work to keep current (sessions by state, queue depths) are not kept:
    their owners register a source with `gauge_source`, called only when somebody scrapes.
    """

    def __init__(self) -> None:
        self.counters: Counter[tuple[str, Labels]] = Counter()
        self.histograms: dict[tuple[str, Labels], _Histogram] = {}
        self._attempts: dict[str, tuple[str, Labels]] = {}  # deliver_attempts keys by platform
        self._by_call: dict[tuple, _Histogram] = {}  # observe's series by (name, *labels as given)
        self.ready: dict[str, bool] = {}  # platform name -> can deliver
        self._sessions: Callable[[], dict[tuple[str, str], int]] = dict
        # With a shared store: the other live instances' people online (bridge.app sets it).
        self.others_online: Callable[[], int] | None = None
        self._gauges: dict[str, tuple[str, tuple[str, ...], list[GaugeSource]]] = {}
        self._registry: CollectorRegistry | None = None  # made at the first scrape (see `registry`)

    # ---- writing -----------------------------------------------------------------------------

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add to a counter, e.g. inc("messages_relayed", direction="to_stranger").

        Label values must come from a small fixed set (a platform name, an exception class, a
        reason word): never a room, a user or any text.
        """
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def add(self, key: tuple[str, Labels], amount: int = 1) -> None:
        """Add to the counter series `key` (from `counter_key`): `inc` without building the key."""
        self.counters[key] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Add one value (seconds) to a histogram, e.g. observe("store_seconds", 0.002, op="save")."""
        # The store's timing calls this on every store call: the series is found by the labels as
        # given (one dict look-up), its sorted key built only the first time.
        call = (name, *labels.items())
        histogram = self._by_call.get(call)
        if histogram is None:
            key = (name, tuple(sorted(labels.items())))
            histogram = self.histograms.get(key)
            if histogram is None:
                histogram = self.histograms[key] = _Histogram(BUCKETS.get(name, DEFAULT_BUCKETS))
            self._by_call[call] = histogram
        histogram.observe(value)

    def observe_wait(self, seconds: float) -> None:
        """Record how long one search took until Connected."""
        self.observe("pairing_wait_seconds", seconds)

    def delivery(self, platform: str, outcome: str, reason: str = "") -> None:
        """Count one delivery attempt: outcome "ok", "retry" (failed, tried again) or "failed" (given up).

        `reason` says why it failed, from a fixed set (an exception class name, "rate_limited", "http_5xx").
        """
        # Every delivery of every event passes here: the key is made once per platform.
        key = self._attempts.get(platform)
        if key is None:
            key = self._attempts[platform] = counter_key("deliver_attempts", platform=platform)
        self.counters[key] += 1
        if outcome == "retry":
            self.inc("deliver_retries", platform=platform, reason=reason or "unknown")
        elif outcome == "failed":
            self.inc("deliver_failures", platform=platform, reason=reason or "unknown")

    def set_ready(self, platform: str, ready: bool) -> None:
        """Say whether a platform can deliver now. The daemon sets it at start-up and when `run` ends;
        a platform that loses its connection later (gateway, sync) says so itself."""
        self.ready[platform] = ready

    def sessions_source(self, source: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Set where session gauges come from: {(platform, state): count}. Called by the router."""
        self._sessions = source

    def gauge_source(self, name: str, labels: tuple[str, ...], source: GaugeSource) -> None:
        """Add a lazily read gauge: `source()` returns {label values: value}, called at each scrape.

        Several owners may add sources under one name (every platform its "queue_depth"), with the
        same label names; their samples are shown together.
        """
        if name in self._gauges:
            if self._gauges[name][1] != labels:
                raise ValueError(f"gauge {name} has labels {self._gauges[name][1]}, not {labels}")
            self._gauges[name][2].append(source)
        else:
            self._gauges[name] = (_help(name), labels, [source])

    # ---- reading -----------------------------------------------------------------------------

    def sessions(self) -> dict[tuple[str, str], int]:
        """Current sessions by (platform, state)."""
        return self._sessions()

    def online(self) -> int:
        """People currently searching or chatting, over every platform and, when several instances
        share one store, over every live instance (theirs as of their last heartbeat)."""
        return self.local_online() + (self.others_online() if self.others_online is not None else 0)

    def local_online(self) -> int:
        """People currently searching or chatting in this process, over every platform."""
        return sum(n for (_, state), n in self.sessions().items() if state != "idle")

    def counter(self, name: str, **labels: str) -> int:
        """The current value of one counter (0 if never counted)."""
        return self.counters.get((name, tuple(sorted(labels.items()))), 0)

    def gauges(self, name: str) -> dict[tuple[str, ...], float]:
        """The current samples of a source-backed gauge (calls its sources)."""
        out: dict[tuple[str, ...], float] = {}
        entry = self._gauges.get(name)
        for source in entry[2] if entry else ():
            out.update(source())
        return out

    @property
    def registry(self) -> CollectorRegistry:
        """The prometheus_client registry that exposes these figures. prometheus_client is imported
        here, at the first scrape: its package brings its HTTP, WSGI and ASGI servers with it (2 MB
        of every process's memory), and a daemon nobody scrapes never needs any of it."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Collector(self))
        return self._registry

    def prometheus(self) -> str:
        """Every figure in the Prometheus text exposition format (0.0.4), with HELP and TYPE lines."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


class _Collector:
    """Builds the metric families from a Metrics at scrape time (prometheus_client escapes labels)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric  # imported by the first scrape already (Metrics.registry)

        m = self.metrics
        sessions = Metric(PREFIX + "sessions", _help("sessions"), "gauge")
        for (platform, state), n in sorted(m.sessions().items()):
            sessions.add_sample(PREFIX + "sessions", {"platform": platform, "state": state}, n)
        yield sessions
        ready = Metric(PREFIX + "platform_ready", _help("platform_ready"), "gauge")
        for platform, up in sorted(m.ready.items()):
            ready.add_sample(PREFIX + "platform_ready", {"platform": platform}, 1 if up else 0)
        yield ready
        for name, (text, labels, _) in sorted(m._gauges.items()):
            family = Metric(PREFIX + name, text, "gauge")
            for values, value in sorted(m.gauges(name).items()):
                family.add_sample(PREFIX + name, dict(zip(labels, values)), value)
            yield family
        yield from self._counters(m)
        yield from self._histograms(m)

    @staticmethod
    def _counters(m: Metrics) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric

        grouped: dict[str, list[tuple[Labels, int]]] = {}
        for (name, labels), value in m.counters.items():
            grouped.setdefault(name, []).append((labels, value))
        for name in sorted(grouped):
            family = Metric(PREFIX + name, _help(name), "counter")
            for labels, value in sorted(grouped[name]):
                family.add_sample(PREFIX + name + "_total", dict(labels), value)
            yield family

    @staticmethod
    def _histograms(m: Metrics) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric

        names = {name for name, _ in m.histograms} | {"pairing_wait_seconds"}  # always shown, even empty
        for name in sorted(names):
            family = Metric(PREFIX + name, _help(name), "histogram")
            series = sorted((labels, h) for (n, labels), h in m.histograms.items() if n == name)
            if not series and name == "pairing_wait_seconds":
                series = [((), _Histogram(WAIT_BUCKETS))]
            for labels, histogram in series:
                _add_histogram(family, PREFIX + name, dict(labels), histogram)
            yield family


def _add_histogram(family: Metric, name: str, labels: dict[str, Any], histogram: _Histogram) -> None:
    running = 0
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts):
        running += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        family.add_sample(name + "_bucket", {**labels, "le": le}, running)
    family.add_sample(name + "_count", labels, running)
    family.add_sample(name + "_sum", labels, histogram.total)
