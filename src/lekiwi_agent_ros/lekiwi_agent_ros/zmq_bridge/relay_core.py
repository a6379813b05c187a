"""What the ZeroMQ relay learns from the frames it forwards (pure: no zmq, no ROS, time passed in).

LeRobot's LeKiwi host (`lekiwi_host.py`) takes actions as JSON objects of floats on a PULL
socket (`{"arm_shoulder_pan.pos": 3.2, ..., "x.vel": 0.1, "y.vel": 0.0, "theta.vel": 0.0}`)
and sends observations as JSON objects on a PUSH socket: the same state keys plus one base64
JPEG string per camera (`"front"`, `"wrist"`). The relay forwards every frame unchanged; this
module only reads them:
- `CommandTracker`: an action counts as command activity when a value moved since the last
  action (beyond a per-key epsilon: a resting leader arm's encoder noise is not a person). A
  client that republishes one constant action at 30 Hz is not driving.
- `ConnectionCounter`: peers connected to a bound socket, from its socket-monitor events.
- `parse_observation`: the state values and camera frames of one observation.
- `EffectTimer`: a changed action's round trip, from the relay forwarding it to the first
  observation from the host that reflects it (the commanded value reached).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommandConfig:
    """Per-key epsilons: position keys (`*.pos`, degrees or -100..100) and the rest (m/s, deg/s)."""

    position_epsilon: float = 1.0
    velocity_epsilon: float = 0.01


class CommandTracker:
    """Tell changing actions (a person) from a constant stream (an idle client)."""

    def __init__(self, config: CommandConfig) -> None:
        """Start with no action seen."""
        self._config = config
        self._last_bytes: bytes | None = None
        self._last: dict[str, float] = {}
        self.changed: dict[str, float] = {}  # the values the last changing action moved
        self.before: dict[str, float] = {}  # every value of the action before that one
        self.actions_total = 0
        self.changes_total = 0
        self.malformed_total = 0

    def observe(self, frame: bytes) -> bool:
        """Take one action frame as relayed; say whether it changed a value (activity)."""
        self.actions_total += 1
        if frame == self._last_bytes:
            return False  # the cheap, common case: a client repeating itself
        self._last_bytes = frame
        values = _numbers(frame)
        if values is None:
            self.malformed_total += 1
            return False
        previous, self._last = self._last, values
        if not previous:
            return False  # the first action tells nothing about movement yet
        changed = {}
        for key, value in values.items():
            before = previous.get(key)
            if before is None or abs(value - before) > epsilon_of(self._config, key):
                changed[key] = value
        if changed:
            self.changed, self.before = changed, previous
            self.changes_total += 1
            return True
        return False


def epsilon_of(config: CommandConfig, key: str) -> float:
    """Return how much a value of `key` must move to count (positions vs velocities)."""
    return config.position_epsilon if key.endswith('.pos') else config.velocity_epsilon


class EffectTimer:
    """Time changed actions until an observation reflects them (one measurement at a time).

    An action that changed values starts a measurement unless one runs. Each observation that
    follows is read while one runs, for the changed keys only (a regular expression finds each
    value: decoding a 50 KB observation as JSON took 0.2 ms, on the relay's forwarding thread,
    the search about a microsecond) and closes it
    when, for a changed key the observation carries, the observed value has reached the
    commanded one: within the key's epsilon, or within a fifth of the step the command made
    (a base whose measured speed settles near the command). Reaching, not "moving towards":
    while an operator ramps a value, the effect of the previous command also moves towards the
    new one, and would pass for it. A measurement that nothing reflects within `max_wait_s` is
    dropped, not reported: a host without motors (or a key it does not echo) gives no latency
    rather than a made-up one.
    """

    def __init__(self, config: CommandConfig, max_wait_s: float = 1.0) -> None:
        """Start with no measurement running."""
        self._config = config
        self._max_wait_s = max_wait_s
        self._target: dict[str, tuple[float, float]] = {}  # key -> (value, tolerance)
        self._patterns: dict[str, re.Pattern[bytes]] = {}
        self._started = 0.0
        self.timed_out = 0

    @property
    def running(self) -> bool:
        """Say whether a measurement waits for its observation."""
        return bool(self._target)

    def command(self, changed: Mapping[str, float], now: float,
                before: Mapping[str, float] | None = None) -> None:
        """Note a forwarded action that changed `changed` (key -> value; `before`: the last)."""
        if self._target and now - self._started <= self._max_wait_s:
            return
        if self._target:
            self.timed_out += 1
        before = before or {}
        self._target = {
            key: (value, max(epsilon_of(self._config, key),
                             0.2 * abs(value - before.get(key, value))))
            for key, value in changed.items()}
        self._patterns = {key: _value_pattern(key) for key in self._target}
        self._started = now

    def observation(self, frame: bytes, now: float) -> float | None:
        """Read an observation forwarded at `now`; return the round trip (ms) it closes."""
        if not self._target:
            return None
        if now - self._started > self._max_wait_s:
            self._target, self.timed_out = {}, self.timed_out + 1
            return None
        for key, (target, tolerance) in self._target.items():
            found = self._patterns[key].search(frame)
            if found is None:
                continue
            try:
                value = float(found.group(1))
            except ValueError:
                continue
            if math.isfinite(value) and abs(value - target) <= tolerance:
                self._target = {}
                return max(0.0, (now - self._started) * 1000.0)
        return None


def _value_pattern(key: str) -> re.Pattern[bytes]:
    """Return a pattern finding the JSON number of `"key": ...` in an observation frame."""
    # re caches compiled patterns: the same few keys cost nothing after the first action.
    return re.compile(rb'"' + re.escape(key.encode()) +
                      rb'"\s*:\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)')


def _numbers(frame: bytes) -> dict[str, float] | None:
    """Return the finite numeric values of a JSON object frame, or None when it is not one."""
    try:
        decoded = json.loads(frame)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(decoded, dict):
        return None
    return {str(k): float(v) for k, v in decoded.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


@dataclass
class ConnectionCounter:
    """Count peers of a bound ZeroMQ socket from its monitor events (accepted / disconnected)."""

    connected: int = 0
    peers_seen: int = 0

    def accepted(self) -> None:
        """A peer connected."""
        self.connected += 1
        self.peers_seen += 1

    def disconnected(self) -> None:
        """A peer went away."""
        self.connected = max(0, self.connected - 1)


@dataclass(frozen=True)
class Observation:
    """One observation: numeric state values and JPEG frames by camera name."""

    state: dict[str, float] = field(default_factory=dict)
    frames: dict[str, bytes] = field(default_factory=dict)


def parse_observation(frame: bytes) -> Observation | None:
    """Parse one observation frame of the LeKiwi host; None when it is not a JSON object."""
    try:
        decoded = json.loads(frame)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(decoded, dict):
        return None
    state: dict[str, float] = {}
    frames: dict[str, bytes] = {}
    for key, value in decoded.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                state[str(key)] = float(value)
        elif isinstance(value, str) and len(value) > 64:
            try:
                frames[str(key)] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                continue
    return Observation(state, frames)


BATTERY_KEYS = {
    'voltage': ('battery.voltage', 'battery_voltage', 'voltage'),
    'percentage': ('battery.percentage', 'battery_percentage', 'battery'),
    'current': ('battery.current', 'battery_current'),
}


def battery_values(state: Mapping[str, float]) -> dict[str, float]:
    """Return the battery values an observation carries (a stock LeKiwi host sends none)."""
    found: dict[str, float] = {}
    for name, keys in BATTERY_KEYS.items():
        for key in keys:
            if key in state:
                found[name] = state[key]
                break
    return found
