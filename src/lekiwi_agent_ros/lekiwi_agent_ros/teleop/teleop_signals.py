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


class JoyRest:
    """Each joystick axis's and button's rest value, learned rather than assumed to be 0.

    A gamepad whose triggers rest at +1.0 and that republishes at 20 Hz is at rest, not
    driven. Before anything is learned an axis rests at its configured value, else at the
    first message's value where that is exactly -1.0 or +1.0 (how `joy` reports a released
    trigger), else at 0.0 (a centred stick: a first command of 0.6 is input). Buttons rest
    released. The rest pose is learned again whenever the whole pose (every axis within the
    deadzone, every button the same) holds still for `learn_s`: an idle pad never moves, a
    person driving does. The price, written down: a stick held perfectly still at one
    deflection for `learn_s` becomes its rest, so the next movement is what counts.
    """

    def __init__(self, deadzone: float, learn_s: float, axis_rest: Sequence[float] = ()) -> None:
        """Start with no pose seen."""
        self._deadzone = deadzone
        self._learn_s = learn_s
        self._configured = tuple(axis_rest)
        self._axes_rest: list[float] | None = None
        self._buttons_rest: list[int] = []
        self._still_axes: list[float] = []
        self._still_buttons: list[int] = []
        self._still_since = 0.0

    def configure(self, deadzone: float, learn_s: float, axis_rest: Sequence[float]) -> None:
        """Change the tuning; a new configured rest applies from the next pose reset."""
        self._deadzone, self._learn_s, self._configured = deadzone, learn_s, tuple(axis_rest)

    @property
    def axes_rest(self) -> tuple[float, ...]:
        """Return the rest value of each axis (empty before the first message)."""
        return tuple(self._axes_rest or ())

    def has_input(self, axes: Sequence[float], buttons: Sequence[int], now: float) -> bool:
        """Take one message at `now`; say whether it is off the rest pose (a hand on it)."""
        axes, buttons = list(axes), list(buttons)
        rest = self._axes_rest
        if rest is None or len(rest) != len(axes) or len(self._buttons_rest) != len(buttons):
            # First message, or another device (see the class docstring).
            self._axes_rest = [self._configured[i] if i < len(self._configured)
                               else (v if v in (-1.0, 1.0) else 0.0)
                               for i, v in enumerate(axes)]
            self._buttons_rest = [0] * len(buttons)
            self._still_axes, self._still_buttons, self._still_since = axes, buttons, now
        elif not self._same(axes, buttons, self._still_axes, self._still_buttons):
            self._still_axes, self._still_buttons, self._still_since = axes, buttons, now
        elif now - self._still_since >= self._learn_s:
            self._axes_rest, self._buttons_rest = list(self._still_axes), self._still_buttons
        assert self._axes_rest is not None
        return not self._same(axes, buttons, self._axes_rest, self._buttons_rest)

    def _same(self, axes: Sequence[float], buttons: Sequence[int],
              ref_axes: Sequence[float], ref_buttons: Sequence[int]) -> bool:
        if list(buttons) != list(ref_buttons):
            return False
        for value, ref in zip(axes, ref_axes, strict=False):
            # A broken driver's NaN is no evidence either way.
            if math.isfinite(value) and math.isfinite(ref) and abs(value - ref) > self._deadzone:
                return False
        return True
