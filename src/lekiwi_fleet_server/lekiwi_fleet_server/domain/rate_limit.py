"""A token bucket: at most `rate_per_s` frames a second on average, bursts of `burst`.

Pure: time comes in as an argument. One per robot connection, so that one robot sending too
much is refused (`rate_limited`) without slowing any other.
"""

from __future__ import annotations


class TokenBucket:
    """Admit events at `rate_per_s` on average with bursts of up to `burst`."""

    __slots__ = ('_rate', '_burst', '_tokens', '_at')

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError('rate_per_s must be > 0 and burst >= 1')
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def admit(self, now: float) -> bool:
        """Take one token if there is one; False when the caller must refuse the event."""
        tokens = self._tokens
        if tokens < self._burst:
            # A clock that went back refills nothing (max with 0).
            tokens = min(self._burst, tokens + max(0.0, now - self._at) * self._rate)
        self._at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False

    def retry_after_s(self) -> float:
        """Return how long until the next token (for the refusal's hint)."""
        return max(0.0, (1.0 - self._tokens) / self._rate)
