"""StateThrottle: discrete changes go at once, the rest at most every interval, newest kept."""

import pytest

from lekiwi_agent_ros.uplink.state_throttle import StateThrottle, signature


def status(active: bool, score: float, peers: int = 0) -> dict:
    return {
        'header': {'stamp': {'sec': int(score * 100), 'nanosec': 0}, 'frame_id': ''},
        'active': active,
        'score': score,
        'webrtc_peers': peers,
        'active_since': {'sec': 0, 'nanosec': 0},
    }


def test_signature_keeps_discrete_fields_only() -> None:
    assert signature(status(True, 0.5, 2)) == (('active', True), ('webrtc_peers', 2))


def test_first_message_and_discrete_changes_go_at_once() -> None:
    throttle = StateThrottle(5.0)
    assert throttle.offer(status(False, 0.0), 0.0) is not None
    assert throttle.offer(status(False, 0.1), 1.0) is None
    assert throttle.offer(status(True, 0.9), 1.5) == status(True, 0.9)
    assert throttle.offer(status(True, 0.8, peers=1), 1.6) is not None


def test_analog_changes_wait_for_the_interval_and_only_the_newest_goes() -> None:
    throttle = StateThrottle(5.0)
    throttle.offer(status(True, 0.5), 0.0)
    assert throttle.offer(status(True, 0.6), 1.0) is None
    assert throttle.offer(status(True, 0.7), 2.0) is None
    assert throttle.flush(4.9) is None
    assert throttle.flush(5.0) == status(True, 0.7)
    assert throttle.flush(20.0) is None  # nothing held any more
    assert throttle.offer(status(True, 0.8), 10.1) == status(True, 0.8)  # interval passed


def test_zero_interval_forwards_everything_and_bad_intervals_are_refused() -> None:
    throttle = StateThrottle(0.0)
    assert all(throttle.offer(status(True, s / 10), 0.0) is not None for s in range(5))
    assert StateThrottle(1.0).flush(0.0) is None
    with pytest.raises(ValueError):
        StateThrottle(-1.0)
