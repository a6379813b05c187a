"""Robot presence: online while a connection is open and heard from, offline otherwise.

Pure: the gateway tells it what happened and when (`now` in Unix seconds); it answers with the
presence changes to commit and the connections to ping or drop. A robot is identified by its
id and a connection by an opaque, hashable handle, so a newer connection can replace an older
one without the robot flapping offline.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from lekiwi_fleet_server.store.interface import PresenceChange

# A robot silent for this many ping intervals is pinged (see PresenceTracker.sweep).
IDLE_INTERVALS = 1.5


@dataclass(slots=True)
class _Entry:
    conn: Hashable
    last_heard: float
    last_ping: float


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a periodic sweep found: connections to ping and robots gone silent."""

    to_ping: tuple[Hashable, ...]
    silent: tuple[tuple[str, Hashable], ...]  # (robot_id, connection) now offline
    changes: tuple[PresenceChange, ...]


class PresenceTracker:
    """Track which robots are online, with a silence timeout and ping-when-idle."""

    def __init__(self, timeout_s: float, ping_interval_s: float) -> None:
        if timeout_s <= 0 or ping_interval_s <= 0:
            raise ValueError('timeout_s and ping_interval_s must be positive')
        self._timeout_s = timeout_s
        self._ping_interval_s = ping_interval_s
        self._online: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._online)

    def is_online(self, robot_id: str) -> bool:
        """Tell whether the robot has a current connection."""
        return robot_id in self._online

    def last_heard(self) -> list[tuple[str, float]]:
        """Return (robot_id, when last heard) of every online robot (discovery reads it)."""
        return [(robot_id, entry.last_heard) for robot_id, entry in self._online.items()]

    def current(self, robot_id: str) -> Hashable | None:
        """Return the robot's current connection, or None."""
        entry = self._online.get(robot_id)
        return entry.conn if entry is not None else None

    def connected(self, robot_id: str, conn: Hashable, now: float
                  ) -> tuple[PresenceChange | None, Hashable | None]:
        """Record an authenticated connection; return (change, replaced older connection)."""
        entry = self._online.get(robot_id)
        self._online[robot_id] = _Entry(conn, now, now)
        if entry is None:
            return PresenceChange(robot_id, True, now, 'connected'), None
        # Replacement keeps the robot online: no offline/online pair for a reconnect race.
        return None, (entry.conn if entry.conn != conn else None)

    def heard(self, robot_id: str, now: float) -> None:
        """Note that something (a frame or a pong) arrived from the robot."""
        entry = self._online.get(robot_id)
        if entry is not None:
            entry.last_heard = now

    def closed(self, robot_id: str, conn: Hashable, now: float,
               reason: str = 'disconnected') -> PresenceChange | None:
        """Record a closed connection; the robot goes offline unless a newer one replaced it."""
        entry = self._online.get(robot_id)
        if entry is None or entry.conn != conn:
            return None
        del self._online[robot_id]
        return PresenceChange(robot_id, False, now, reason)

    def sweep(self, now: float) -> SweepResult:
        """Find robots silent past the timeout (now offline) and idle ones due a ping."""
        to_ping: list[Hashable] = []
        silent: list[tuple[str, Hashable]] = []
        timeout, interval = self._timeout_s, self._ping_interval_s
        idle = interval * IDLE_INTERVALS
        # Heard after this, a robot is neither silent nor idle: one comparison for most robots
        # (the sweep runs a few times a second over all of them).
        recent = now - min(idle, timeout)
        for robot_id, entry in self._online.items():
            if entry.last_heard > recent:
                continue
            if now - entry.last_heard >= timeout:
                silent.append((robot_id, entry.conn))
            elif now - entry.last_heard >= idle and now - entry.last_ping >= interval:
                # Ping only when idle: a frame received within the interval already proves
                # the link alive, and 10,000 pings a second would cost the loop real time.
                # Idle means silent for an interval and a half, so a robot that sends once an
                # interval (its heartbeat) is never pinged, however its phase falls.
                entry.last_ping = now
                to_ping.append(entry.conn)
        changes = []
        for robot_id, _conn in silent:
            del self._online[robot_id]
            changes.append(PresenceChange(robot_id, False, now, 'timeout'))
        return SweepResult(tuple(to_ping), tuple(silent), tuple(changes))
