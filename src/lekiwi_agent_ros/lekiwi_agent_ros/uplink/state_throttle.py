"""How often the uplink forwards a state topic whose messages arrive faster than it is worth.

A state message (teleop/status: every change and 1 Hz) supersedes the one before it, and the
heartbeat already carries `teleop_active` and `teleop_score` every second. So the uplink sends
such a topic at once when a discrete field changes (a bool, integer or string, e.g. `active` or
`webrtc_peers`) and otherwise at most every `min_interval_s`, holding back only the newest. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def signature(msg: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Return the discrete top-level fields of a rosbridge JSON message (header excluded)."""
    return tuple(
        (name, value)
        for name, value in msg.items()
        if name != 'header' and isinstance(value, bool | int | str)
    )


class StateThrottle:
    """Decides when a state topic's newest message goes to the outbox."""

    def __init__(self, min_interval_s: float) -> None:
        if not min_interval_s >= 0.0:
            raise ValueError(f'min_interval_s must be >= 0, got {min_interval_s}')
        self._interval = min_interval_s
        self._last_sent_at: float | None = None
        self._last_signature: tuple[tuple[str, Any], ...] | None = None
        self._held: dict[str, Any] | None = None

    def offer(self, msg: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """Return `msg` if it should go now, else hold it (replacing any held one) and None."""
        key = signature(msg)
        if (
            self._last_sent_at is None
            or key != self._last_signature
            or now - self._last_sent_at >= self._interval
        ):
            return self._release(dict(msg), key, now)
        self._held = dict(msg)
        return None

    def flush(self, now: float) -> dict[str, Any] | None:
        """Return the held message once its interval has passed, else None."""
        if self._held is None or self._last_sent_at is None:
            return None
        if now - self._last_sent_at < self._interval:
            return None
        held = self._held
        return self._release(held, signature(held), now)

    def _release(
        self, msg: dict[str, Any], key: tuple[tuple[str, Any], ...], now: float
    ) -> dict[str, Any]:
        self._held = None
        self._last_sent_at = now
        self._last_signature = key
        return msg
