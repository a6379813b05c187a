"""Which inventory presence changes become store events, and how often.

The gateway records a robot's connection changes as `RobotCameOnline` / `RobotWentOffline`
already (domain/robot_state.py); the inventory's reporter (presence_flaps.py) adds the shades
the gateway does not see: stale (silent past `presence_stale_s`), flapping (reported once per
flap window, with the count of changes) and settled (a flapping robot quiet for a window). This
turns those into events on the robot's stream, so they show in its timeline:

- `stale` -> `RobotWentStale`, at most once per robot per flap window (a robot whose
  heartbeats arrive just past the stale threshold would otherwise write one every few seconds;
  stale does not count as a flap in the reporter); back online from a stale that was
  recorded -> `RobotStaleEnded` (from stale to offline is the gateway's `RobotWentOffline`);
- `flapping` -> `RobotFlapped` (the reporter emits it once per window already);
- the reporter's `flap_ended` -> `RobotPresenceSettled` with the settled state.
Online and offline changes are left to the gateway's events (one per connection change).
Pure: time comes from the changes themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

from lekiwi_fleet_server.discovery.presence_flaps import PresenceChanged, PresenceState
from lekiwi_fleet_server.domain.events import (
    DomainEvent,
    RobotFlapped,
    RobotPresenceSettled,
    RobotStaleEnded,
    RobotWentStale,
)


class PresenceEvents:
    """Turn reported presence changes into the store events they deserve."""

    def __init__(self, flap_window_s: float) -> None:
        self._window = flap_window_s
        self._stale_at: dict[str, float] = {}  # robot -> when its last stale event was made
        self._stale_now: set[str] = set()  # robots whose recorded stale has not ended yet

    def events(self, changes: Iterable[PresenceChanged]) -> list[DomainEvent]:
        """Return the events of these changes, stale ones at most once a window per robot."""
        out: list[DomainEvent] = []
        for change in changes:
            robot_id = change.robot_id
            if change.state is PresenceState.STALE:
                last = self._stale_at.get(robot_id)
                if last is not None and change.at - last < self._window:
                    continue
                self._stale_at[robot_id] = change.at
                self._stale_now.add(robot_id)
                out.append(RobotWentStale(robot_id, at=change.at, reason=change.reason))
                continue
            if robot_id in self._stale_now:  # its recorded stale ends here, one way or another
                self._stale_now.discard(robot_id)
                if change.state is PresenceState.ONLINE and change.reason != 'flap_ended':
                    out.append(RobotStaleEnded(robot_id, at=change.at, reason=change.reason))
            if change.state is PresenceState.FLAPPING:
                out.append(RobotFlapped(robot_id, at=change.at,
                                        changes_in_window=change.changes_in_window))
            elif change.reason == 'flap_ended':
                out.append(RobotPresenceSettled(robot_id, at=change.at,
                                                state=change.state.value, reason=change.reason))
        if len(self._stale_at) > 100_000:  # bounded: forget robots not stale for a window
            horizon = max(self._stale_at.values()) - self._window
            self._stale_at = {k: v for k, v in self._stale_at.items() if v > horizon}
        return out
