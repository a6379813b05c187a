"""Ack latency of the uplink's frames over a sliding window, and its p99 against a threshold.

Pure: the WebSocket shell tells it what it sent (`sent`) and what came back (`received`); time
comes in as `now`. The uplink falls back to HTTP polling when the p99 of the last window is
over the threshold (issue 20: "uplink latency p99 over 500 ms -> switch to polling").
"""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# The head of a publish frame as uplink_session.publish_frame writes it: no JSON parse per send.
_PUBLISH_KEY = re.compile(r'"boot_id":"([A-Za-z0-9-]{1,64})","seq":(\d+)')
_MAX_TRACKED = 4096  # frames sent and not acked yet that we time; more is a broken link anyway


@dataclass(frozen=True)
class LatencyConfig:
    """When the WebSocket counts as too slow."""

    threshold_s: float = 0.5  # p99 over this: too slow
    window_s: float = 30.0  # samples of this long ago count
    min_samples: int = 10  # fewer samples in the window say nothing yet

    def __post_init__(self) -> None:
        if not self.threshold_s > 0 or not self.window_s > 0 or self.min_samples < 1:
            raise ValueError(f'invalid latency config {self}')


class AckLatency:
    """Time each publish frame from its send to its ack; tell the p99 of the last window."""

    def __init__(self, config: LatencyConfig, now: Callable[[], float]) -> None:
        self._config = config
        self._now = now
        self._sent: dict[tuple[str, int], float] = {}
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def reset(self) -> None:
        """Forget everything (a new connection)."""
        self._sent.clear()
        self._samples.clear()

    def sent(self, frame: str) -> None:
        """Note a frame going out (only publish frames are timed; a resend keeps its first)."""
        if not frame.startswith('{"op":"publish"'):
            return
        match = _PUBLISH_KEY.search(frame, 0, 200)
        if match is None:
            return
        key = (match.group(1), int(match.group(2)))
        if key not in self._sent and len(self._sent) < _MAX_TRACKED:
            self._sent[key] = self._now()

    def record(self, latency_s: float) -> None:
        """Add one sample measured elsewhere (the session times acks on any transport)."""
        self._samples.append((self._now(), latency_s))

    def received(self, text: str | bytes) -> None:
        """Note a frame from the server; an ack gives one sample per frame it names."""
        if isinstance(text, bytes) or '"fleet/ack"' not in text:
            return
        try:
            msg = json.loads(text).get('msg') or {}
            boot_id, ranges = msg['boot_id'], msg['ranges']
            spans = [(int(low), int(high)) for low, high in ranges]
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # the session reports malformed frames; here it is just no sample
        now = self._now()
        done = [k for k in self._sent if k[0] == boot_id and any(a <= k[1] <= b for a, b in spans)]
        for key in done:
            self._samples.append((now, now - self._sent.pop(key)))

    def p99(self) -> float | None:
        """Return the p99 ack latency of the window, or None with too few samples."""
        cutoff = self._now() - self._config.window_s
        samples = self._samples
        while samples and samples[0][0] < cutoff:
            samples.popleft()
        if len(samples) < self._config.min_samples:
            return None
        ordered = sorted(latency for _at, latency in samples)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def too_slow(self) -> str | None:
        """Return why the link is too slow (p99 over the threshold), or None."""
        p99 = self.p99()
        if p99 is None or p99 <= self._config.threshold_s:
            return None
        return (f'ack latency p99 {p99 * 1000:.0f} ms over {self._config.threshold_s * 1000:.0f}'
                f' ms in the last {self._config.window_s:g} s')
