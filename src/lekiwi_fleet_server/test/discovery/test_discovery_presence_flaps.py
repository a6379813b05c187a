"""Unit tests of presence reporting: stale, offline within the timeout, flaps folded."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.discovery.presence_flaps import (
    PresenceConfig,
    PresenceReporter,
    PresenceState,
)

ONLINE, STALE = PresenceState.ONLINE, PresenceState.STALE
OFFLINE, FLAPPING = PresenceState.OFFLINE, PresenceState.FLAPPING


def reporter(**kw: float) -> PresenceReporter:
    return PresenceReporter(PresenceConfig(**kw))  # type: ignore[arg-type]


def test_silence_goes_stale_then_offline_within_the_timeout() -> None:
    p = reporter(stale_after_s=1.5, offline_after_s=3.0)
    (up,) = p.heard('k', 100.0)
    assert (up.state, up.previous, up.reason, up.at) == (ONLINE, OFFLINE, 'heard', 100.0)
    assert p.tick(101.0) == []
    (stale,) = p.tick(101.6)
    assert (stale.state, stale.reason, stale.at) == (STALE, 'silent', 101.5)
    (down,) = p.tick(103.2)
    assert (down.state, down.previous, down.reason, down.at) == (OFFLINE, STALE, 'timeout',
                                                                 103.0)
    assert p.tick(110.0) == []
    assert p.state('k') == (OFFLINE, 'timeout', 103.0)


def test_being_heard_keeps_a_robot_online_and_brings_a_stale_one_back() -> None:
    p = reporter()
    p.heard('k', 0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        assert p.heard('k', t) == []
        assert p.tick(t + 0.5) == []
    p.tick(5.6)
    (back,) = p.heard('k', 5.7)
    assert (back.state, back.previous) == (ONLINE, STALE)


def test_a_source_losing_the_robot_is_offline_at_once_with_its_reason() -> None:
    p = reporter()
    p.heard('k', 0.0)
    (down,) = p.lost('k', 0.2, 'disconnected')
    assert (down.state, down.reason, down.at) == (OFFLINE, 'disconnected', 0.2)
    assert p.lost('k', 0.3, 'disconnected') == [] and p.tick(10.0) == []
    assert p.lost('never-seen', 1.0, 'disconnected') == []


def test_a_flapping_robot_is_reported_once_per_window_then_settles() -> None:
    p = reporter(flap_window_s=10.0, flap_threshold=4)
    reports = []
    reports += p.heard('k', 0.0)
    t = 0.0
    for _ in range(20):  # up and down every 0.1 s: 40 raw changes within 4 s
        t += 0.1
        reports += p.lost('k', t, 'disconnected')
        t += 0.1
        reports += p.heard('k', t)
        reports += p.tick(t)
    states = [r.state for r in reports]
    # online, offline, online, offline (3 raw changes reported), then one flapping report.
    assert states == [ONLINE, OFFLINE, ONLINE, OFFLINE, FLAPPING]
    assert reports[-1].changes_in_window == 4
    # Still flapping at the window's end: one more report with the count of that window.
    reports = []
    for _ in range(5):
        t += 0.1
        reports += p.lost('k', t, 'disconnected')
        t += 0.1
        reports += p.heard('k', t)
    while t < 9.9:
        t += 0.5
        reports += p.heard('k', t) + p.tick(t)
    assert reports == []
    (again,) = p.tick(10.5)
    assert again.state is FLAPPING and again.changes_in_window >= 40
    # A quiet window (heard, no change), then its settled state, once.
    while t < 20.0:
        t += 0.5
        assert p.heard('k', t) + p.tick(t) == []
    (settled,) = p.tick(20.6)
    assert (settled.state, settled.previous, settled.reason) == (ONLINE, FLAPPING, 'flap_ended')
    assert p.tick(20.7) == []


def test_a_flapping_robot_that_goes_silent_settles_offline() -> None:
    p = reporter(flap_window_s=5.0, flap_threshold=2, offline_after_s=3.0, stale_after_s=1.0)
    p.heard('k', 0.0)
    p.lost('k', 0.1, 'disconnected')
    (flap,) = p.heard('k', 0.2)
    assert flap.state is FLAPPING
    assert p.tick(4.0) == []  # the timeout falls inside the window: folded into the flap
    (settled,) = p.tick(10.3)
    assert (settled.state, settled.reason) == (OFFLINE, 'flap_ended')


def test_the_config_is_validated() -> None:
    with pytest.raises(ValueError):
        PresenceConfig(stale_after_s=3.0, offline_after_s=3.0)
    with pytest.raises(ValueError):
        PresenceConfig(flap_threshold=1)


def test_many_robots_heard_at_once_answer_as_each_heard_alone() -> None:
    one, many = reporter(), reporter()
    for p in (one, many):
        p.heard('a', 0.0)
        p.heard('b', 0.0)
        p.tick(2.0)  # both stale
        p.lost('b', 2.5, 'disconnected')
    sightings = [('a', 3.0), ('b', 3.0), ('c', 3.0), ('a', 2.0)]  # an older time never wins
    alone = [change for robot_id, at in sightings for change in one.heard(robot_id, at)]
    assert many.heard_all(sightings) == alone and len(alone) == 3
    assert many.state('a') == one.state('a') == (ONLINE, 'heard', 3.0)
    assert many.tick(4.6) == one.tick(4.6) and many.state('a')[0] is STALE
