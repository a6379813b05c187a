"""RoundTripThrottle: per-operator command round trips, reported at a bounded rate (pure).

The streamer and the ZeroMQ bridge measure a round trip per command (up to 30 a second per
operator); the monitor needs only a fresh value per operator. Each operator's first sample is
reported at once, later ones at most every `period_s` (the newest one wins), so a driving
operator costs the graph two small messages a second, not thirty.
"""

from __future__ import annotations

from collections.abc import Callable


class RoundTripThrottle:
    """Keep the newest round trip of each operator; say which are due to be reported."""

    def __init__(self, period_s: float, now: Callable[[], float]) -> None:
        """Report each operator at most every `period_s` seconds of `now` (monotonic)."""
        self._period_s = period_s
        self._now = now
        self._last_report: dict[str, float] = {}
        self._pending: dict[str, float] = {}

    def record(self, operator: str, rtt_ms: float) -> list[tuple[str, float]]:
        """Take one sample; return what is due now (as `due()`)."""
        self._pending[operator] = rtt_ms
        return self.due()

    def due(self) -> list[tuple[str, float]]:
        """Return (operator, newest round trip ms) for each operator due, marking them sent."""
        now = self._now()
        out = []
        for operator, rtt in list(self._pending.items()):
            if now - self._last_report.get(operator, -float('inf')) >= self._period_s:
                self._last_report[operator] = now
                del self._pending[operator]
                out.append((operator, rtt))
        return out

    def forget(self, operator: str) -> None:
        """Drop an operator that left (its pending sample is not reported)."""
        self._pending.pop(operator, None)
        self._last_report.pop(operator, None)
