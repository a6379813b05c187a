"""Unit tests of TeleopDetector: signals, weights, hysteresis and sessions on a fake clock."""

import math
from dataclasses import replace

import pytest

from lekiwi_agent_ros.teleop.teleop_detector import (
    SESSION_ENDED,
    SESSION_STARTED,
    SessionEnded,
    SessionStarted,
    TeleopConfig,
    TeleopDetector,
)

WALL_OFFSET = 1_764_000_000.0
TICK = 0.1


class Clock:
    """A manual monotonic clock."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + WALL_OFFSET


def make(config: TeleopConfig | None = None) -> tuple[TeleopDetector, Clock]:
    clock = Clock()
    ids = iter(f's{i}' for i in range(1, 100))
    detector = TeleopDetector(config or TeleopConfig(), clock, clock.wall, lambda: next(ids))
    return detector, clock


def drive(
    detector: TeleopDetector,
    clock: Clock,
    seconds: float,
    axes: tuple[float, ...] = (0.6, -0.3),
    buttons: tuple[int, ...] = (),
    rate_hz: float = 30.0,
    stamp_age_s: float | None = 0.01,
) -> list[SessionStarted | SessionEnded]:
    """Publish joystick messages at rate_hz for `seconds`, updating at 10 Hz like the node."""
    changes = []
    if axes is not None:  # the pad is seen at rest before a hand moves it (rests are learned)
        detector.observe_joy(tuple(0.0 for _ in axes), tuple(0 for _ in buttons), stamp_age_s)
    step = 1.0 / rate_hz
    end = clock.t + seconds
    next_tick = clock.t
    while clock.t < end - 1e-9:
        if axes is not None:
            detector.observe_joy(axes, buttons, stamp_age_s)
        if clock.t >= next_tick - 1e-9:
            _, change = detector.update()
            if change:
                changes.append(change)
            next_tick += TICK
        clock.t += step
    return changes


def idle(detector: TeleopDetector, clock: Clock, seconds: float):
    """Let time pass with no input, updating at 10 Hz; return (changes, time of each)."""
    changes = []
    end = clock.t + seconds
    while clock.t < end - 1e-9:
        clock.t += TICK
        _, change = detector.update()
        if change:
            changes.append((change, clock.t))
    return changes


def test_defaults_are_the_issue_weights_and_valid() -> None:
    config = TeleopConfig()
    assert (config.weight_joystick, config.weight_video, config.weight_webrtc,
            config.weight_latency) == (0.4, 0.3, 0.2, 0.1)
    assert config.problems() == []


@pytest.mark.parametrize(
    ('change', 'reason'),
    [
        ({'weight_joystick': 0.5}, 'weights must sum to 1'),
        ({'weight_joystick': 1.2, 'weight_video': -0.5}, 'weight_video must be within 0..1'),
        ({'joystick_window_s': -0.5}, 'joystick_window_s must be > 0'),
        ({'video_window_s': 0.0}, 'video_window_s must be > 0'),
        ({'off_hold_s': -1.0}, 'off_hold_s must be >= 0'),
        ({'off_threshold': 0.5}, 'off_threshold must be > 0 and <= on_threshold'),
        ({'on_threshold': 1.5}, 'on_threshold must be within (0, 1]'),
        ({'joystick_deadzone': 1.0}, 'joystick_deadzone must be within [0, 1)'),
        ({'webrtc_full_peers': 0}, 'webrtc_full_peers must be >= 1'),
        ({'latency_threshold_ms': math.nan}, 'latency_threshold_ms must be finite'),
        ({'joystick_axis_rest': (0.0, math.inf)}, 'joystick_axis_rest must be finite'),
    ],
)
def test_invalid_configs_are_rejected_with_a_reason(change: dict, reason: str) -> None:
    config = replace(TeleopConfig(), **change)
    assert any(reason in p for p in config.problems())
    with pytest.raises(ValueError, match='invalid teleop parameters'):
        config.validated()
    with pytest.raises(ValueError):
        TeleopDetector(config, lambda: 0.0, lambda: 0.0)


def test_from_mapping_coerces_ros_values_and_rejects_bad_ones() -> None:
    config = TeleopConfig.from_mapping(
        {'video_full_streams': 2.0, 'on_hold_s': 0, 'joystick_axis_rest': [0, 1.0]})
    assert config.video_full_streams == 2
    assert config.on_hold_s == 0.0
    assert config.joystick_axis_rest == (0.0, 1.0)
    with pytest.raises(ValueError, match='unknown teleop parameters: bogus'):
        TeleopConfig.from_mapping({'bogus': 1})
    with pytest.raises(ValueError, match='must be an integer'):
        TeleopConfig.from_mapping({'video_full_streams': 1.5})
    with pytest.raises(ValueError, match='must be a number'):
        TeleopConfig.from_mapping({'on_hold_s': 'soon'})
    with pytest.raises(ValueError, match='must be a number'):
        TeleopConfig.from_mapping({'on_hold_s': True})
    with pytest.raises(ValueError, match='list of numbers'):
        TeleopConfig.from_mapping({'joystick_axis_rest': 3.0})
    with pytest.raises(ValueError, match='list of numbers'):
        TeleopConfig.from_mapping({'joystick_axis_rest': ['a']})
    with pytest.raises(ValueError, match='weights must sum to 1'):
        TeleopConfig.from_mapping({'weight_latency': 0.3})


def test_moving_joystick_starts_a_session_quickly() -> None:
    detector, clock = make()
    t0 = clock.t
    changes = drive(detector, clock, 1.0)
    assert len(changes) == 1
    started = changes[0]
    assert isinstance(started, SessionStarted)
    assert started.session_id == 's1'
    # Four messages (100 ms at 30 Hz) cross the on-threshold, then 100 ms of hold.
    assert started.started_at - WALL_OFFSET - t0 == pytest.approx(0.1, abs=0.11)
    reading, _ = detector.update()
    assert reading.active and detector.active
    assert reading.joystick_signal == 1.0
    assert reading.score == pytest.approx(0.4)
    assert reading.joystick_rate_hz == pytest.approx(30.0, abs=2.1)
    assert reading.active_since == started.started_at
    assert math.isnan(reading.control_latency_ms)


def test_joystick_of_zeros_is_never_active() -> None:
    detector, clock = make()
    assert drive(detector, clock, 5.0, axes=(0.0, 0.0, 0.05), buttons=(0, 0)) == []
    reading, _ = detector.update()
    assert not reading.active
    assert reading.score == 0.0


@pytest.mark.parametrize(
    ('axes', 'buttons', 'stamp_age_s'),
    [
        ((math.nan, math.nan), (), 0.01),  # broken driver
        ((), (), 0.01),  # empty messages
    ],
)
def test_bad_joystick_input_never_makes_a_session(axes, buttons, stamp_age_s) -> None:
    detector, clock = make()
    assert drive(detector, clock, 3.0, axes=axes, buttons=buttons,
                 stamp_age_s=stamp_age_s) == []


def test_unstamped_messages_and_buttons_count() -> None:
    detector, clock = make()
    changes = drive(detector, clock, 1.0, axes=(0.0,), buttons=(0, 1), stamp_age_s=None)
    assert [c.event_type for c in changes] == [SESSION_STARTED]


def test_slow_joystick_below_full_rate_does_not_start() -> None:
    detector, clock = make()
    # 4 Hz of input fills half the window: score 0.2 stays under the 0.35 on-threshold.
    assert drive(detector, clock, 3.0, rate_hz=4.0) == []


def test_brief_pause_does_not_end_the_session() -> None:
    detector, clock = make()
    drive(detector, clock, 1.0)
    assert detector.active
    # Resting the stick for 0.9 s (score falls, but not for the 1 s hold) keeps the session.
    assert drive(detector, clock, 0.9, axes=(0.0, 0.0)) == []
    assert drive(detector, clock, 1.0) == []
    assert detector.active


def test_session_ends_after_the_hold_and_reports_its_duration() -> None:
    detector, clock = make()
    drive(detector, clock, 2.0)
    last_input = clock.t - 1.0 / 30.0
    changes = idle(detector, clock, 3.0)
    assert len(changes) == 1
    ended, detected_at = changes[0]
    assert isinstance(ended, SessionEnded)
    assert ended.reason == 'inactive'
    assert ended.event_type == SESSION_ENDED
    # The score falls under 0.25 about 0.43 s after the last input (seen at the next 10 Hz
    # update); the hold adds 1 s.
    assert detected_at - last_input == pytest.approx(1.5, abs=0.15)
    assert ended.ended_at - WALL_OFFSET - last_input == pytest.approx(0.5, abs=0.12)
    assert ended.duration_s == pytest.approx(ended.ended_at - ended.started_at)
    assert ended.duration_s == pytest.approx(2.3, abs=0.15)
    reading, _ = detector.update()
    assert not reading.active and reading.active_since is None


def test_sessions_restart_with_new_ids() -> None:
    detector, clock = make()
    drive(detector, clock, 1.0)
    idle(detector, clock, 2.0)
    changes = drive(detector, clock, 1.0)
    assert [c.session_id for c in changes] == ['s2']


def test_video_alone_never_starts_a_session() -> None:
    detector, clock = make()
    detector.set_video_subscribers('camera', 3)
    for _ in range(50):
        clock.t += 0.1
        detector.observe_video_frame('camera')
        reading, change = detector.update()
        assert change is None
    assert reading.video_signal == 1.0
    assert reading.score == pytest.approx(0.3)
    assert reading.active_video_streams == 3


def test_subscribers_of_a_dead_video_topic_are_not_streams() -> None:
    detector, clock = make()
    detector.set_video_subscribers('camera', 2)
    reading, _ = detector.update()
    assert reading.active_video_streams == 0  # no frame seen yet
    detector.observe_video_frame('camera')
    clock.t += 0.5
    assert detector.update()[0].active_video_streams == 2
    clock.t += 1.0  # frames stopped: the topic vanished
    reading, _ = detector.update()
    assert reading.active_video_streams == 0
    clock.t += 1.0
    assert detector.update()[0].video_signal == 0.0


def test_a_passive_viewer_is_present_but_not_driving() -> None:
    detector, clock = make()
    changes = []
    for _ in range(20):
        clock.t += 0.1
        detector.observe_webrtc(peers=1, tracks=1, status_age_s=0.01)
        _, change = detector.update()
        if change:
            changes.append(change)
    reading, _ = detector.update()
    # Video and a peer score 0.5, over the 0.35 threshold: still nobody drives. Its pings are
    # liveness, not a command loop: no latency signal.
    assert changes == [] and not reading.active and not reading.teleop_active
    assert reading.operator_present
    assert reading.score == pytest.approx(0.5)
    assert (reading.webrtc_peers, reading.active_video_streams) == (1, 1)
    assert math.isnan(reading.control_latency_ms)
    assert reading.latency_signal == 0.0


def test_streamer_that_goes_silent_counts_as_gone() -> None:
    detector, clock = make()
    detector.observe_webrtc(peers=1, tracks=1, status_age_s=0.0)
    clock.t += 1.0
    reading, _ = detector.update()
    assert reading.webrtc_signal == pytest.approx(1.0)
    clock.t += 2.0  # past the 2.5 s status timeout: peers expired at +2.5 s
    reading, _ = detector.update()
    assert reading.webrtc_peers == 0
    assert reading.webrtc_signal == pytest.approx(0.5)  # half of the last second had the peer


def test_stale_or_future_streamer_status_is_ignored() -> None:
    detector, clock = make()
    assert not detector.observe_webrtc(1, 1, status_age_s=60.0)
    assert not detector.observe_webrtc(1, 1, status_age_s=-3.0)
    assert not detector.observe_webrtc(1, 1, status_age_s=math.nan)
    assert detector.update()[0].webrtc_peers == 0


def test_latency_needs_a_fresh_round_trip_under_threshold() -> None:
    detector, clock = make()
    assert detector.observe_round_trip('webrtc/a', 600.0, 0.0)
    assert detector.update()[0].latency_signal == 0.0
    assert detector.observe_round_trip('webrtc/a', 100.0, 1.9)
    assert detector.update()[0].latency_signal == 1.0
    clock.t += 0.2  # the round trip is now 2.1 s old
    assert detector.update()[0].latency_signal == 0.0
    assert math.isnan(detector.update()[0].control_latency_ms)
    assert not detector.observe_round_trip('webrtc/a', math.nan, 0.0)
    assert not detector.observe_round_trip('webrtc/a', 10.0, 5.0)  # closed too long ago
    assert not detector.observe_round_trip('webrtc/a', -1.0, 0.0)
    assert detector.update()[0].latency_signal == 0.0


def test_round_trips_are_kept_per_operator_and_the_best_fresh_one_counts() -> None:
    detector, clock = make()
    detector.observe_webrtc(2, 0, status_age_s=0.0)
    detector.observe_round_trip('webrtc/slow', 700.0, 0.0)
    detector.observe_round_trip('zmq', 30.0, 0.0)
    reading, _ = detector.update()
    assert detector.round_trips() == {'webrtc/slow': 700.0, 'zmq': 30.0}
    assert reading.control_latency_ms == 30.0 and reading.latency_signal == 1.0
    clock.t += 1.5
    detector.observe_round_trip('webrtc/slow', 650.0, 0.0)
    clock.t += 1.0  # the ZeroMQ operator's loop went stale; the slow peer's is fresh
    reading, _ = detector.update()
    assert detector.round_trips() == {'webrtc/slow': 650.0}
    assert reading.control_latency_ms == 650.0 and reading.latency_signal == 0.0
    # The streamer reports nobody connected: no WebRTC loop is live any more.
    detector.observe_webrtc(0, 0, status_age_s=0.0)
    assert detector.round_trips() == {}


def test_weights_change_what_counts() -> None:
    config = replace(TeleopConfig(), weight_joystick=0.2, weight_video=0.5)
    detector, clock = make(config)
    drive(detector, clock, 1.0)
    reading, _ = detector.update()
    assert reading.score == pytest.approx(0.2)
    assert not reading.active


def test_zero_holds_switch_at_once() -> None:
    detector, clock = make(replace(TeleopConfig(), on_hold_s=0.0, off_hold_s=0.0))
    detector.observe_joy((0.0,), (), None)  # at rest first
    for _ in range(4):
        detector.observe_joy((1.0,), (), None)
    _, change = detector.update()
    assert isinstance(change, SessionStarted)
    clock.t += 0.6
    _, change = detector.update()
    assert isinstance(change, SessionEnded)
    assert change.duration_s == pytest.approx(0.6)


def test_end_session_at_shutdown() -> None:
    detector, clock = make()
    assert detector.end_session() is None
    drive(detector, clock, 1.0)
    clock.t += 0.5
    ended = detector.end_session()
    assert ended is not None and ended.reason == 'shutdown'
    assert ended.payload()['reason'] == 'shutdown'
    assert not detector.active


def test_reconfigure_keeps_the_open_session() -> None:
    detector, clock = make()
    drive(detector, clock, 1.0)
    detector.reconfigure(replace(TeleopConfig(), off_hold_s=3.0, joystick_window_s=0.25))
    assert detector.config.off_hold_s == 3.0
    changes = idle(detector, clock, 2.5)
    assert changes == [] and detector.active
    with pytest.raises(ValueError):
        detector.reconfigure(replace(TeleopConfig(), weight_video=0.9))
    assert detector.config.off_hold_s == 3.0


def test_payloads_have_the_reserved_fields() -> None:
    started = SessionStarted('abc', 10.0, 0.41234)
    assert started.payload() == {'session_id': 'abc', 'started_at': 10.0, 'score': 0.4123}
    ended = SessionEnded('abc', 10.0, 12.5, 2.5, 'inactive')
    assert ended.payload() == {'session_id': 'abc', 'started_at': 10.0, 'ended_at': 12.5,
                               'duration_s': 2.5, 'reason': 'inactive'}


def test_quiescent_only_without_any_evidence() -> None:
    detector, clock = make()
    assert detector.quiescent()
    detector.observe_joy((0.0,), (0,), None)  # zeros are no evidence
    assert detector.quiescent()
    detector.observe_joy((0.9,), (0,), None)
    assert not detector.quiescent()
    clock.t += 2.1  # the input left the window and command_idle_s (2 s) passed
    assert detector.quiescent()
    detector.observe_webrtc(1, 0, 0.0)
    assert not detector.quiescent()  # a connected peer: its expiry needs watching
    clock.t += 0.2
    detector.observe_webrtc(0, 0, 0.0)
    assert not detector.quiescent()  # the window still remembers the peer
    clock.t += 1.1
    detector.update()
    assert detector.quiescent()
    drive(detector, clock, 1.0)
    idle(detector, clock, 0.6)
    assert detector.active and not detector.quiescent()  # an open session must be ended


def test_hold_running_while_a_crossed_score_waits_out_its_hold() -> None:
    detector, clock = make()
    assert not detector.hold_running()
    detector.observe_joy((0.0, 0.0), (), 0.01)  # at rest first
    detector.observe_joy((0.6, -0.3), (), 0.01)
    clock.t += 0.05
    for _ in range(5):
        detector.observe_joy((0.6, -0.3), (), 0.01)
    detector.update()  # over the on-threshold, on-hold (0.1 s) not yet over
    assert detector.hold_running() and not detector.active
    drive(detector, clock, 0.5)
    assert detector.active and not detector.hold_running()  # steady driving: no hold
    clock.t += 0.6
    detector.update()  # the window emptied: under the off-threshold, off-hold (1 s) runs
    assert detector.hold_running() and detector.active
    clock.t += 1.0
    _, change = detector.update()
    assert isinstance(change, SessionEnded) and not detector.hold_running()


def test_an_idle_gamepad_with_triggers_resting_at_one_is_not_driving() -> None:
    detector, clock = make()
    # Two sticks at 0, two triggers at +1.0, republished at 20 Hz (joy's autorepeat).
    changes = []
    for _ in range(100):
        detector.observe_joy((0.0, 0.0, 1.0, 1.0), (0, 0), 0.01)
        clock.t += 0.05
        changes.append(detector.update()[1])
    reading, _ = detector.update()
    assert changes == [None] * 100
    assert reading.joystick_signal == 0.0 and reading.score == 0.0 and not reading.active


def test_pulling_a_trigger_from_its_learned_rest_is_driving() -> None:
    detector, clock = make()
    detector.observe_joy((0.0, 1.0), (0,), 0.01)
    changes = []
    for i in range(30):
        detector.observe_joy((0.0, 1.0 - 0.05 * i), (0,), 0.01)  # squeezing the trigger
        clock.t += 1 / 30
        changes.append(detector.update()[1])
    assert [c.event_type for c in changes if c] == [SESSION_STARTED]


def test_a_pose_held_still_long_enough_becomes_the_rest() -> None:
    detector, clock = make(replace(TeleopConfig(), joystick_rest_learn_s=2.0))
    detector.observe_joy((0.0,), (), None)
    counted = []
    for _ in range(90):  # 3 s at 30 Hz, perfectly still at 0.7
        counted.append(detector.observe_joy((0.7,), (), None))
        clock.t += 1 / 30
    assert all(counted[:55]) and not any(counted[65:])
    # Back to the centre is a change: it counts again until that pose is learned.
    assert detector.observe_joy((0.0,), (), None)


@pytest.mark.parametrize('skew_s', [2.0, -2.0, 30.0])
def test_a_joystick_whose_clock_is_off_is_still_detected(skew_s: float) -> None:
    detector, clock = make()
    changes = drive(detector, clock, 1.0, stamp_age_s=skew_s)
    assert [c.event_type for c in changes] == [SESSION_STARTED]


def test_commands_are_required_and_their_absence_ends_the_session() -> None:
    detector, clock = make()

    def viewer() -> None:
        detector.observe_webrtc(peers=1, tracks=1, status_age_s=0.0)

    viewer()
    clock.t += 0.5
    assert not detector.update()[0].active
    changes = []
    for _ in range(30):  # one second of commands from another channel (ZeroMQ actions)
        viewer()
        detector.observe_command()
        clock.t += 1 / 30
        if (change := detector.update()[1]) is not None:
            changes.append((change, clock.t))
    assert [c.event_type for c, _ in changes] == [SESSION_STARTED]
    last_command = clock.t
    ended = None
    while clock.t < last_command + 5.0 and ended is None:
        viewer()  # still watching: score 0.5 stays over off_threshold
        clock.t += 0.1
        reading, ended = detector.update()
    assert isinstance(ended, SessionEnded)
    # command_idle_s (2 s) then off_hold_s (1 s)
    assert clock.t - last_command == pytest.approx(3.0, abs=0.15)
    reading, _ = detector.update()
    assert not reading.teleop_active and reading.operator_present


def test_operators_of_other_channels_are_present() -> None:
    detector, clock = make()
    assert not detector.update()[0].operator_present
    detector.set_operators('zmq', 1)
    assert detector.update()[0].operator_present and not detector.quiescent()
    detector.set_operators('zmq', 0)
    assert not detector.update()[0].operator_present


def test_a_first_command_off_centre_counts() -> None:
    detector, clock = make()
    # An operator whose first data-channel command is already 0.6 (no rest message before).
    assert detector.observe_joy((0.6, 0.0), (0,), None)
    assert detector.observe_joy((0.0, 0.0), (1,), None)  # a button pressed is input too
