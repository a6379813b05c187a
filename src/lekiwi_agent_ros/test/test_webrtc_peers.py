"""Unit tests of the streamer's PeerRegistry on a fake clock."""

import math

import pytest

from lekiwi_agent_ros.webrtc.webrtc_peers import PeerRegistry


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + 1_000.0


def make(max_peers: int = 2, idle: float = 3.0) -> tuple[PeerRegistry, Clock]:
    clock = Clock()
    return PeerRegistry(max_peers, 5.0, idle, clock, clock.wall), clock


def test_peers_count_once_connected_and_tracks_while_camera_is_live() -> None:
    registry, _ = make()
    registry.add('a', video=True)
    registry.add('b', video=False)
    assert len(registry) == 2 and 'a' in registry
    assert registry.snapshot(camera_live=True).counts() == (0, 0)
    registry.set_connected('a')
    registry.set_connected('b')
    assert registry.snapshot(camera_live=True).counts() == (2, 1)
    assert registry.snapshot(camera_live=False).counts() == (2, 0)
    assert registry.remove('a') and not registry.remove('a')
    assert registry.snapshot(camera_live=True).counts() == (1, 0)


def test_max_peers() -> None:
    registry, _ = make(max_peers=1)
    registry.add('a', video=True)
    assert registry.is_full()
    with pytest.raises(OverflowError):
        registry.add('b', video=True)


def test_unconnected_and_silent_peers_expire() -> None:
    registry, clock = make()
    registry.add('never', video=True)
    registry.add('quiet', video=True)
    registry.set_connected('quiet')
    registry.channel_opened('quiet')
    assert registry.channel_peers() == ['quiet']
    for _ in range(2):
        clock.t += 2.0
        registry.heard_from('quiet')
        assert registry.expired() == []
    clock.t += 1.5
    assert registry.expired() == ['never']
    clock.t += 2.0
    assert sorted(registry.expired()) == ['never', 'quiet']


def test_idle_timeout_zero_never_expires_connected_peers() -> None:
    registry, clock = make(idle=0.0)
    registry.add('a', video=True)
    registry.set_connected('a')
    registry.channel_opened('a')
    clock.t += 100.0
    assert registry.expired() == []


def test_round_trips_and_commands_are_dated() -> None:
    registry, clock = make()
    snapshot = registry.snapshot(camera_live=True)
    assert math.isnan(snapshot.round_trip_ms)
    assert snapshot.round_trip_measured_at is None and snapshot.last_command_at is None
    registry.add('a', video=False)
    registry.round_trip('a', 12.5)
    clock.t += 1.0
    registry.command_received('a')
    snapshot = registry.snapshot(camera_live=True)
    assert snapshot.round_trip_ms == 12.5
    assert snapshot.round_trip_measured_at == 1050.0
    assert snapshot.last_command_at == 1051.0


def test_unknown_peers_are_ignored() -> None:
    registry, _ = make()
    registry.set_connected('ghost')
    registry.channel_opened('ghost')
    registry.heard_from('ghost')
    assert len(registry) == 0


def test_the_round_trip_leaves_with_the_last_peer() -> None:
    registry, _ = make()
    for peer_id in ('a', 'b'):
        registry.add(peer_id, video=False)
        registry.set_connected(peer_id)
    registry.round_trip('a', 20.0)
    registry.remove('a')
    assert registry.snapshot(camera_live=True).round_trip_ms == 20.0  # b's loop is live
    registry.command_received('b')
    registry.remove('b')
    snapshot = registry.snapshot(camera_live=True)
    assert math.isnan(snapshot.round_trip_ms) and snapshot.round_trip_measured_at is None
    assert snapshot.last_command_at is not None  # history, not a live loop
