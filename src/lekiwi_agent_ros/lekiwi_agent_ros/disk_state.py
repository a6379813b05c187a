"""The outbox's full disk as fleet state: `agent.disk_full` / `agent.disk_recovered` (pure).

While the disk is full the outbox cannot store anything, so an event about it cannot travel the
outbox's exactly-once path. `DiskStateReporter` therefore makes two kinds of report:
- `agent.disk_full` (severity ERROR, payload `{"error": <SQLite's message>, "held": n}`) as a
  publish frame without `boot_id`/`seq`: the robot protocol's at-most-once path, sent at once
  over the live connection and again every `repeat_s` while the disk stays full (a connection
  that was down at the first one still learns it);
- `agent.disk_recovered` (severity INFO, payload `{"held": n, "full_for_s": t}`) as an ordinary
  event, once space returns, through the outbox (exactly once, after the held messages).
The server keeps both as robot events (its timeline shows the error). Time comes in as `now`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

DISK_FULL = 'agent.disk_full'
DISK_RECOVERED = 'agent.disk_recovered'
SEVERITY_INFO = 1
SEVERITY_ERROR = 3  # FleetEvent.SEVERITY_ERROR


class DiskStateReporter:
    """Decide when the outbox's storage condition is reported, and build the reports."""

    def __init__(self, robot_id: str, boot_id: str, wall_now: Callable[[], float],
                 repeat_s: float = 30.0) -> None:
        """Report for `robot_id`; `wall_now` is Unix seconds (event stamps)."""
        self._robot_id = robot_id
        self._boot_id = boot_id
        self._now = wall_now
        self._repeat_s = repeat_s
        self._full_since: float | None = None
        self._last_report = -math.inf
        self._sequence = 0

    @property
    def full(self) -> bool:
        """Say whether the disk is full now (as last reported to this object)."""
        return self._full_since is not None

    def storage_failed(self, problem: str, held: int) -> dict[str, Any] | None:
        """Note a failed write; return the `agent.disk_full` frame to send now, if one is due."""
        now = self._now()
        if self._full_since is None:
            self._full_since = now
        elif now - self._last_report < self._repeat_s:
            return None
        self._last_report = now
        event = self._event(DISK_FULL, SEVERITY_ERROR, {'error': problem, 'held': held}, now)
        return {'op': 'publish', 'topic': 'fleet/events', 'msg': event}

    def storage_recovered(self, held: int) -> dict[str, Any] | None:
        """Note that the outbox writes again; return the `agent.disk_recovered` event, once."""
        if self._full_since is None:
            return None
        now = self._now()
        full_for = max(0.0, now - self._full_since)
        self._full_since, self._last_report = None, -math.inf
        return self._event(DISK_RECOVERED, SEVERITY_INFO,
                           {'held': held, 'full_for_s': round(full_for, 3)}, now)

    def _event(self, event_type: str, severity: int, payload: dict[str, Any],
               now: float) -> dict[str, Any]:
        self._sequence += 1
        sec = math.floor(now)
        return {'header': {'stamp': {'sec': sec, 'nanosec': min(int((now - sec) * 1e9),
                                                                 999_999_999)},
                           'frame_id': ''},
                'robot_id': self._robot_id, 'boot_id': self._boot_id,
                'sequence': self._sequence, 'severity': severity, 'event_type': event_type,
                'payload_json': json.dumps(payload, separators=(',', ':'))}
