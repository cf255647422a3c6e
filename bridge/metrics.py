"""Counters and gauges of the running bridge, and their Prometheus text form."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["Metrics"]

# Upper bounds (seconds) of the pairing-wait histogram.
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)


class Metrics:
    """Updated by the router; read (never written) by platforms that show status pages."""

    def __init__(self) -> None:
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.wait_counts = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0
        self._sessions: Callable[[], dict[tuple[str, str], int]] = dict

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add to a counter, e.g. inc("messages_relayed", direction="to_stranger")."""
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def observe_wait(self, seconds: float) -> None:
        """Record how long one search took until Connected."""
        self.wait_sum += seconds
        for i, bound in enumerate(WAIT_BUCKETS):
            if seconds <= bound:
                self.wait_counts[i] += 1
                return
        self.wait_counts[-1] += 1

    def sessions_source(self, source: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Set where session gauges come from: {(platform, state): count}. Called by the router."""
        self._sessions = source

    def sessions(self) -> dict[tuple[str, str], int]:
        """Current sessions by (platform, state)."""
        return self._sessions()

    def online(self) -> int:
        """People currently searching or chatting, over every platform."""
        return sum(n for (_, state), n in self.sessions().items() if state != "idle")

    def prometheus(self) -> str:
        """Every figure in the Prometheus text exposition format."""
        out = ["# TYPE stranger_bridge_sessions gauge"]
        for (platform, state), n in sorted(self.sessions().items()):
            out.append(f'stranger_bridge_sessions{{platform="{platform}",state="{state}"}} {n}')
        names = sorted({name for name, _ in self.counters})
        for name in names:
            out.append(f"# TYPE stranger_bridge_{name}_total counter")
            for (n, labels), value in sorted(self.counters.items()):
                if n == name:
                    text = ",".join(f'{k}="{v}"' for k, v in labels)
                    out.append(f"stranger_bridge_{name}_total{{{text}}} {value}" if text else f"stranger_bridge_{name}_total {value}")
        out.append("# TYPE stranger_bridge_pairing_wait_seconds histogram")
        running = 0
        for bound, count in zip((*WAIT_BUCKETS, float("inf")), self.wait_counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'stranger_bridge_pairing_wait_seconds_bucket{{le="{le}"}} {running}')
        out.append(f"stranger_bridge_pairing_wait_seconds_sum {self.wait_sum}")
        out.append(f"stranger_bridge_pairing_wait_seconds_count {running}")
        return "\n".join(out) + "\n"
