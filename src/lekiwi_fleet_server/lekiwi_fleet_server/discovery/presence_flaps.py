"""Presence as an operator sees it: online, stale, offline, and flapping robots reported once.

Pure: a shell reports when a robot was heard from and when a source lost it; `tick` turns
silence into stale and offline. A robot whose raw state changes `flap_threshold` times within
`flap_window_s` is reported once as flapping, then at most once per window while it goes on,
and once more with its settled state when a whole window passes without a change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


class PresenceState(str, Enum):
    ONLINE = 'online'
    STALE = 'stale'
    OFFLINE = 'offline'
    FLAPPING = 'flapping'


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    stale_after_s: float = 1.5
    offline_after_s: float = 3.0
    flap_window_s: float = 30.0
    flap_threshold: int = 4  # raw changes within the window that make a robot flapping

    def __post_init__(self) -> None:
        if not 0 < self.stale_after_s < self.offline_after_s:
            raise ValueError('need 0 < stale_after_s < offline_after_s')
        if self.flap_window_s <= 0 or self.flap_threshold < 2:
            raise ValueError('need flap_window_s > 0 and flap_threshold >= 2')


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A reported change: the robot's state, the one before, why and when."""

    robot_id: str
    state: PresenceState
    previous: PresenceState | None
    reason: str
    at: float
    changes_in_window: int = 0  # raw changes counted while flapping


@dataclass(slots=True)
class _Robot:
    raw: PresenceState
    reported: PresenceState
    since: float
    reason: str
    last_heard: float | None
    changes: deque[float] = field(default_factory=deque)
    flap_report_at: float | None = None  # next once-a-window report while flapping


class PresenceReporter:
    """Derive online/stale/offline from sightings and silence; fold flaps into one report."""

    def __init__(self, config: PresenceConfig) -> None:
        self._config = config
        self._robots: dict[str, _Robot] = {}

    def state(self, robot_id: str) -> tuple[PresenceState, str, float] | None:
        """Return the reported (state, reason, since) of a robot, or None if never heard."""
        robot = self._robots.get(robot_id)
        return (robot.reported, robot.reason, robot.since) if robot is not None else None

    def heard(self, robot_id: str, at: float, reason: str = 'heard') -> list[PresenceChanged]:
        """Note a sign of life (a frame, a sighting) at time `at`."""
        robot = self._robots.get(robot_id)
        if robot is None:
            robot = self._robots[robot_id] = _Robot(PresenceState.OFFLINE,
                                                    PresenceState.OFFLINE, at, reason, at)
            return self._raw_change(robot_id, robot, PresenceState.ONLINE, reason, at,
                                    count=False)
        if robot.last_heard is None or at > robot.last_heard:
            robot.last_heard = at
        if robot.raw is PresenceState.ONLINE:
            return []
        return self._raw_change(robot_id, robot, PresenceState.ONLINE, reason, at)

    def heard_all(self, sightings: Iterable[tuple[str, float]],
                  reason: str = 'heard') -> list[PresenceChanged]:
        """Note signs of life of many robots: `heard` for each, cheap for robots online."""
        robots, online = self._robots, PresenceState.ONLINE
        out: list[PresenceChanged] = []
        for robot_id, at in sightings:
            robot = robots.get(robot_id)
            # Most robots of a steady fleet: online and heard again, nothing to report. Inlined
            # because discovery hands every connected robot over four times a second.
            if robot is not None and robot.raw is online:
                if robot.last_heard is None or at > robot.last_heard:
                    robot.last_heard = at
                continue
            out += self.heard(robot_id, at, reason)
        return out

    def lost(self, robot_id: str, at: float, reason: str) -> list[PresenceChanged]:
        """Note that a source lost the robot for good (closed connection, withdrawn)."""
        robot = self._robots.get(robot_id)
        if robot is None or robot.raw is PresenceState.OFFLINE:
            return []
        robot.last_heard = None  # silence no longer decides: it is gone
        return self._raw_change(robot_id, robot, PresenceState.OFFLINE, reason, at)

    def tick(self, now: float) -> list[PresenceChanged]:
        """Turn silence into stale and offline; end or re-report flapping windows."""
        cfg = self._config
        out: list[PresenceChanged] = []
        for robot_id, robot in self._robots.items():
            if robot.last_heard is not None and robot.raw is not PresenceState.OFFLINE:
                silent = now - robot.last_heard
                if silent >= cfg.offline_after_s:
                    out += self._raw_change(robot_id, robot, PresenceState.OFFLINE, 'timeout',
                                            robot.last_heard + cfg.offline_after_s)
                elif silent >= cfg.stale_after_s and robot.raw is PresenceState.ONLINE:
                    # Stale is a shade of online: it does not count as a flap.
                    robot.raw = PresenceState.STALE
                    if robot.reported is PresenceState.ONLINE:
                        out.append(self._report(robot_id, robot, PresenceState.STALE,
                                                'silent', robot.last_heard + cfg.stale_after_s))
            if robot.flap_report_at is not None and now >= robot.flap_report_at:
                self._forget_old(robot, now)
                if robot.changes:
                    robot.flap_report_at = now + cfg.flap_window_s
                    out.append(self._report(robot_id, robot, PresenceState.FLAPPING,
                                            'flapping', now, len(robot.changes)))
                else:
                    robot.flap_report_at = None
                    out.append(self._report(robot_id, robot, robot.raw, 'flap_ended', now))
        return out

    def _raw_change(self, robot_id: str, robot: _Robot, state: PresenceState, reason: str,
                    at: float, *, count: bool = True) -> list[PresenceChanged]:
        was_up = robot.raw is not PresenceState.OFFLINE
        robot.raw = state
        if count and was_up != (state is not PresenceState.OFFLINE):
            robot.changes.append(at)
            self._forget_old(robot, at)
        if robot.flap_report_at is not None:
            return []  # flapping: reported once a window by tick, not per change
        if len(robot.changes) >= self._config.flap_threshold:
            robot.flap_report_at = at + self._config.flap_window_s
            changes, robot.changes = len(robot.changes), deque()
            return [self._report(robot_id, robot, PresenceState.FLAPPING, 'flapping', at,
                                 changes)]
        if robot.reported is state:
            return []
        return [self._report(robot_id, robot, state, reason, at)]

    def _forget_old(self, robot: _Robot, now: float) -> None:
        horizon = now - self._config.flap_window_s
        while robot.changes and robot.changes[0] <= horizon:
            robot.changes.popleft()

    def _report(self, robot_id: str, robot: _Robot, state: PresenceState, reason: str,
                at: float, changes: int = 0) -> PresenceChanged:
        change = PresenceChanged(robot_id, state, robot.reported, reason, at, changes)
        robot.reported, robot.reason, robot.since = state, reason, at
        return change
