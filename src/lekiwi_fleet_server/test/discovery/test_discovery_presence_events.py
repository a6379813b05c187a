"""Which presence changes become store events: stale once a window, flapping, settled."""

from __future__ import annotations

from lekiwi_fleet_server.discovery.presence_events import PresenceEvents
from lekiwi_fleet_server.discovery.presence_flaps import (
    PresenceChanged,
    PresenceConfig,
    PresenceReporter,
    PresenceState,
)
from lekiwi_fleet_server.domain.events import (
    RobotFlapped,
    RobotPresenceSettled,
    RobotStaleEnded,
    RobotWentStale,
)

ON, STALE, OFF = PresenceState.ONLINE, PresenceState.STALE, PresenceState.OFFLINE


def test_online_and_offline_are_left_to_the_gateway() -> None:
    events = PresenceEvents(flap_window_s=30)
    assert events.events([PresenceChanged('r', ON, None, 'connected', 1.0),
                          PresenceChanged('r', OFF, ON, 'timeout', 5.0)]) == []


def test_stale_is_an_event_at_most_once_per_window_per_robot() -> None:
    events = PresenceEvents(flap_window_s=30)
    out = events.events([PresenceChanged('r', STALE, ON, 'silent', 10.0),
                         PresenceChanged('r', ON, STALE, 'heard', 11.0),
                         PresenceChanged('r', STALE, ON, 'silent', 20.0),
                         PresenceChanged('r', ON, STALE, 'heard', 21.0),
                         PresenceChanged('q', STALE, ON, 'silent', 20.0)])
    # The second stale of r within the window is not recorded, nor is its end.
    assert out == [RobotWentStale('r', at=10.0, reason='silent'),
                   RobotStaleEnded('r', at=11.0, reason='heard'),
                   RobotWentStale('q', at=20.0, reason='silent')]
    assert events.events([PresenceChanged('r', STALE, ON, 'silent', 40.0),
                          PresenceChanged('r', OFF, STALE, 'timeout', 41.5),
                          PresenceChanged('r', ON, OFF, 'connected', 50.0)]) == [
        RobotWentStale('r', at=40.0, reason='silent')]  # offline: the gateway's event


def test_a_flapping_robot_makes_one_event_per_window_then_a_settled_one() -> None:
    reporter = PresenceReporter(PresenceConfig(stale_after_s=1, offline_after_s=2,
                                               flap_window_s=10, flap_threshold=4))
    events = PresenceEvents(flap_window_s=10)
    changes: list[PresenceChanged] = []
    t = 0.0
    for _ in range(10):  # twenty raw changes within eight seconds
        changes += reporter.heard('r', t, 'connected')
        changes += reporter.lost('r', t + 0.2, 'disconnected')
        t += 0.8
    changes += reporter.tick(t)
    recorded = events.events(changes)
    assert [type(e) for e in recorded] == [RobotFlapped]  # not one per change
    later = reporter.tick(12.0) + reporter.tick(23.0)  # one more report, then quiet
    recorded = events.events(later)
    assert [type(e) for e in recorded] == [RobotFlapped, RobotPresenceSettled]
    settled = recorded[-1]
    assert isinstance(settled, RobotPresenceSettled) and settled.state == 'offline'
