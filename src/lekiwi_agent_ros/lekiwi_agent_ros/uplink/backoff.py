"""Reconnection delays: exponential backoff with full jitter (AWS architecture blog's variant).

The n-th consecutive failure waits a uniformly random time in [0, min(cap, base * 2**n)], so a
fleet that lost its server does not come back in lockstep. A connection that stayed up for
`stable_after_s` counts as a success and starts the sequence again, and so does the server
closing with 1012 (service restart): the server is coming back, the robot is not at fault.
Random and clock injected.

Why a 10 s cap: after a server restart every robot is back within one cap of the server being up
(its next attempt falls in [0, cap]), so 10 s keeps a fleet's return under 30 s with room for
the restart itself, while 1,000 robots still arrive spread over the cap (100/s) rather than
at once (tests/bench/reconnect.py measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffConfig:
    """Base and cap of the delays, and how long a connection must last to reset them."""

    base_s: float = 0.5
    cap_s: float = 10.0
    stable_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 < self.base_s <= self.cap_s:
            raise ValueError(f'backoff needs 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}')
        if not self.stable_after_s >= 0.0:
            raise ValueError(f'stable_after_s must be >= 0, got {self.stable_after_s}')


class Backoff:
    """Delays before reconnecting, growing with each failure and reset by a stable connection."""

    def __init__(
        self, config: BackoffConfig, random: Callable[[], float], now: Callable[[], float]
    ) -> None:
        self._config = config
        self._random = random
        self._now = now
        self._failures = 0
        self._connected_at: float | None = None

    @property
    def failures(self) -> int:
        """Return the number of consecutive failed or short-lived connections."""
        return self._failures

    def ceiling(self) -> float:
        """Return the largest delay the next call to next_delay() may return."""
        # min() first: 2**n overflows a float long before a robot gives up.
        exponent = min(self._failures, 64)
        return min(self._config.cap_s, self._config.base_s * 2.0**exponent)

    def next_delay(self) -> float:
        """Return how long to wait before the next attempt, and count a failure."""
        delay = self._random() * self.ceiling()
        self._failures += 1
        return delay

    def server_restarting(self) -> None:
        """Start the delays again: the server closed with 1012 and will be back shortly."""
        self._failures = 0
        self._connected_at = None

    def connected(self) -> None:
        """Note that a connection is up (authenticated)."""
        self._connected_at = self._now()

    def disconnected(self) -> None:
        """Note that the connection is gone; reset the delays if it lasted long enough."""
        if self._connected_at is not None:
            if self._now() - self._connected_at >= self._config.stable_after_s:
                self._failures = 0
            self._connected_at = None
