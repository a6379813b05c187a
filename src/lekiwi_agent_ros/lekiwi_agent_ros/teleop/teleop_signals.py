"""Sliding windows and input tests behind the teleop signals (pure: no ROS, time passed in)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence


class EventWindow:
    """Count events that happened within the last `window_s` seconds."""

    def __init__(self, window_s: float) -> None:
        """Start empty with the given window length."""
        self._window_s = window_s
        self._times: deque[float] = deque()

    @property
    def window_s(self) -> float:
        """Return the window length in seconds."""
        return self._window_s

    def set_window(self, window_s: float) -> None:
        """Change the window length; events already seen are kept."""
        self._window_s = window_s

    def add(self, t: float) -> None:
        """Record one event at time `t`."""
        self._times.append(t)

    def count(self, now: float) -> int:
        """Return how many events fall in (now - window, now]."""
        times = self._times
        horizon = now - self._window_s
        while times and times[0] <= horizon:
            times.popleft()
        # A clock that steps back leaves events "in the future": they are not evidence of now.
        while times and times[-1] > now:
            times.pop()
        return len(times)

    def clear(self) -> None:
        """Forget every event."""
        self._times.clear()


class LevelWindow:
    """Time-weighted mean of a piecewise-constant level over the last `window_s` seconds."""

    def __init__(self, window_s: float, initial: float = 0.0, t0: float = 0.0) -> None:
        """Start at level `initial`, holding since `t0`."""
        self._window_s = window_s
        # (time the level took effect, level); the first entry may lie before the window.
        self._changes: deque[tuple[float, float]] = deque([(t0, initial)])

    @property
    def level(self) -> float:
        """Return the current level."""
        return self._changes[-1][1]

    def set_window(self, window_s: float) -> None:
        """Change the window length."""
        self._window_s = window_s

    def set(self, t: float, level: float) -> None:
        """Set the level from time `t` on; an unchanged level records nothing."""
        changes = self._changes
        while len(changes) > 1 and changes[-1][0] > t:
            changes.pop()  # the clock stepped back: history after `t` cannot be trusted
        last_t, last_level = changes[-1]
        if last_level == level:
            return
        if last_t >= t:
            changes[-1] = (min(last_t, t), level)
        else:
            changes.append((t, level))

    def mean(self, now: float) -> float:
        """Return the time-weighted mean level over [now - window, now]."""
        changes = self._changes
        if self._window_s <= 0.0:
            return changes[-1][1]
        start = now - self._window_s
        # Keep the entry in force at the window's start; older ones no longer matter.
        while len(changes) > 1 and changes[1][0] <= start:
            changes.popleft()
        total = 0.0
        for i, (t, level) in enumerate(changes):
            begin = max(t, start)
            end = min(changes[i + 1][0] if i + 1 < len(changes) else now, now)
            if end > begin:
                total += (end - begin) * level
        # Time before the first known level counts as zero.
        return total / self._window_s


def joy_has_input(
    axes: Sequence[float],
    buttons: Sequence[int],
    deadzone: float,
    rest: Sequence[float] = (),
) -> bool:
    """Say whether a joystick message carries real input: an axis off rest or a button down."""
    for button in buttons:
        if button:
            return True
    for i, value in enumerate(axes):
        if not math.isfinite(value):
            continue  # a broken driver's NaN is no evidence of a hand on the stick
        at_rest = rest[i] if i < len(rest) else 0.0
        if abs(value - at_rest) > deadzone:
            return True
    return False


def latency_level(rtt_ms: float, threshold_ms: float) -> float:
    """Map a round trip to 0..1: 1 up to the threshold, falling linearly to 0 at twice it."""
    if not math.isfinite(rtt_ms) or rtt_ms < 0.0:
        return 0.0
    if rtt_ms <= threshold_ms:
        return 1.0
    return max(0.0, 2.0 - rtt_ms / threshold_ms)


def stamp_is_fresh(age_s: float | None, max_age_s: float, max_future_s: float) -> bool:
    """Say whether a message stamped `age_s` seconds ago counts as live (None: unstamped)."""
    if age_s is None:
        return True
    if not math.isfinite(age_s):
        return False
    return -max_future_s <= age_s <= max_age_s
