"""TeleopMonitorNode with real rclpy publishers, subscribers and the ROS graph."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator

import pytest
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import RosHarness, ros_harness, wait_for

from lekiwi_agent_ros.msg_types import (
    CommandRoundTrip,
    CompressedImage,
    FleetEvent,
    Joy,
    TeleopStatus,
    WebRtcStatus,
)
from lekiwi_agent_ros.teleop.teleop_monitor import (
    EVENTS_QOS,
    ROUND_TRIP_QOS,
    STATUS_QOS,
    TeleopMonitorNode,
)

VIDEO_TOPIC = 'camera/front/image_raw/compressed'


class Recorder:
    """Collect teleop/status and fleet/events of the namespace, with arrival times."""

    def __init__(self, harness: RosHarness) -> None:
        self.statuses: list[tuple[float, TeleopStatus]] = []
        self.events: list[FleetEvent] = []
        node = harness.node('recorder')
        node.create_subscription(TeleopStatus, 'teleop/status',
                                 lambda m: self.statuses.append((time.monotonic(), m)), STATUS_QOS)
        node.create_subscription(FleetEvent, 'fleet/events', self.events.append, EVENTS_QOS)

    def latest(self) -> TeleopStatus | None:
        return self.statuses[-1][1] if self.statuses else None

    def first_time(self, active: bool, after: float) -> float | None:
        for t, msg in self.statuses:
            if t >= after and msg.active == active:
                return t
        return None


class Joystick:
    """A 30 Hz joystick publisher whose output the test switches between modes."""

    def __init__(self, harness: RosHarness, rate_hz: float = 30.0) -> None:
        self.mode = 'zeros'
        self.first_moving: float | None = None
        self.last_moving: float | None = None
        self._lock = threading.Lock()
        self._n = 0
        self._node = harness.node('joystick')
        self._pub = self._node.create_publisher(Joy, 'joy', qos_profile_sensor_data)
        self._node.create_timer(1.0 / rate_hz, self._tick)

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode

    def _tick(self) -> None:
        with self._lock:
            mode = self.mode
        if mode == 'silent':
            return  # a joystick driver that publishes only on change, or one that died
        self._n += 1
        msg = Joy()
        now = self._node.get_clock().now()
        msg.header.stamp = now.to_msg()
        moving = [0.5 * math.sin(self._n / 5.0) + 0.4, 0.3]
        if mode == 'moving':
            msg.axes = moving
        elif mode == 'zeros':
            msg.axes = [0.0, 0.0, 0.02]
            msg.buttons = [0, 0]
        elif mode == 'bad':
            if self._n % 2:
                msg.axes = [math.nan, math.nan]
            # else: an empty message
        elif mode == 'skewed':  # an operator laptop whose clock is 2 s behind
            msg.axes = moving
            msg.header.stamp.sec -= 2
        self._pub.publish(msg)
        if mode == 'moving':
            t = time.monotonic()
            self.first_moving = self.first_moving or t
            self.last_moving = t


@pytest.fixture(params=['single'])
def harness(request: pytest.FixtureRequest) -> Iterator[RosHarness]:
    with ros_harness(request.param) as h:
        yield h


# The timing-critical tests also run on the EventsExecutor the one-process agent uses.
BOTH_EXECUTORS = pytest.mark.parametrize('harness', ['single', 'events'], indirect=True)
# ... and with both ways of reading inputs: polled (the default) and a callback per message.
BOTH_INPUT_MODES = pytest.mark.parametrize('poll_hz', [10.0, 0.0], ids=['polled', 'callbacks'])


def make_monitor(harness: RosHarness, **params: object) -> TeleopMonitorNode:
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return harness.add(TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                                         parameter_overrides=overrides))


@BOTH_EXECUTORS
@BOTH_INPUT_MODES
def test_moving_joystick_starts_and_ends_a_session_within_a_second(
        harness: RosHarness, poll_hz: float) -> None:
    recorder = Recorder(harness)
    monitor = make_monitor(harness, off_hold_s=0.5, robot_id='kiwi-test', input_poll_hz=poll_hz)
    joystick = Joystick(harness)
    time.sleep(0.5)
    joystick.set_mode('moving')
    assert wait_for(lambda: joystick.first_moving is not None
                    and recorder.first_time(True, joystick.first_moving) is not None, 2.0)
    start_delay = recorder.first_time(True, joystick.first_moving) - joystick.first_moving
    assert start_delay < 1.0
    time.sleep(1.0)
    joystick.set_mode('zeros')  # an idle gamepad keeps publishing zeros
    time.sleep(0.1)
    last = joystick.last_moving
    assert wait_for(lambda: recorder.first_time(False, last) is not None, 2.5)
    stop_delay = recorder.first_time(False, last) - last - 0.5
    assert stop_delay < 1.0

    assert wait_for(lambda: len(recorder.events) == 2, 1.0)
    started, ended = recorder.events
    assert [e.event_type for e in recorder.events] == ['teleop.session_started',
                                                       'teleop.session_ended']
    assert [e.sequence for e in recorder.events] == [1, 2]
    assert {e.boot_id for e in recorder.events} == {monitor.boot_id}
    assert {e.robot_id for e in recorder.events} == {'kiwi-test'}
    assert started.severity == FleetEvent.SEVERITY_INFO
    start_payload = json.loads(started.payload_json)
    end_payload = json.loads(ended.payload_json)
    assert set(start_payload) == {'session_id', 'started_at', 'score'}
    assert end_payload['session_id'] == start_payload['session_id']
    assert end_payload['reason'] == 'inactive'
    assert end_payload['duration_s'] == pytest.approx(1.6, abs=0.5)
    assert abs(start_payload['started_at'] - time.time()) < 10.0
    active = [m for _, m in recorder.statuses if m.active]
    assert active and active[0].joystick_signal > 0.8
    assert active[0].active_since.sec > 0
    assert math.isnan(active[0].control_latency_ms)


@BOTH_EXECUTORS
def test_a_joystick_that_falls_silent_ends_the_session(harness: RosHarness) -> None:
    recorder = Recorder(harness)
    make_monitor(harness, off_hold_s=0.3)
    joystick = Joystick(harness)
    joystick.set_mode('moving')
    assert wait_for(lambda: recorder.latest() is not None and recorder.latest().active, 2.0)
    time.sleep(0.3)
    joystick.set_mode('silent')  # no message at all: only the evaluation timer can notice
    time.sleep(0.1)
    last = joystick.last_moving
    assert wait_for(lambda: recorder.first_time(False, last) is not None, 2.5)
    assert recorder.first_time(False, last) - last - 0.3 < 1.0
    assert [e.event_type for e in recorder.events] == ['teleop.session_started',
                                                       'teleop.session_ended']


def test_zeros_and_bad_input_never_make_a_session(harness: RosHarness) -> None:
    recorder = Recorder(harness)
    make_monitor(harness, status_period_s=0.2)
    joystick = Joystick(harness)
    time.sleep(1.5)
    joystick.set_mode('bad')  # NaN axes and empty messages
    time.sleep(1.5)
    assert len(recorder.statuses) >= 10
    assert not any(m.active for _, m in recorder.statuses)
    assert max(m.score for _, m in recorder.statuses) == 0.0
    assert recorder.events == []


def test_invalid_parameters_are_rejected_at_start(harness: RosHarness) -> None:
    with pytest.raises(ValueError, match='weights must sum to 1'):
        make_monitor(harness, weight_joystick=0.9)
    with pytest.raises(ValueError, match='joystick_window_s must be > 0'):
        make_monitor(harness, joystick_window_s=-0.5)
    with pytest.raises(ValueError, match='evaluate_rate_hz must be > 0'):
        make_monitor(harness, evaluate_rate_hz=0.0)
    with pytest.raises(ValueError, match='input_poll_hz must be >= 0'):
        make_monitor(harness, input_poll_hz=-1.0)


def test_invalid_parameter_changes_are_rejected_and_valid_ones_applied(
        harness: RosHarness) -> None:
    monitor = make_monitor(harness)
    result = monitor.set_parameters([Parameter('weight_video', value=0.5)])[0]
    assert not result.successful and 'weights must sum to 1' in result.reason
    result = monitor.set_parameters([Parameter('off_hold_s', value=-1.0)])[0]
    assert not result.successful and 'off_hold_s must be >= 0' in result.reason
    result = monitor.set_parameters([Parameter('status_period_s', value=0.0)])[0]
    assert not result.successful and 'status_period_s must be > 0' in result.reason
    result = monitor.set_parameters([Parameter('joy_topic', value='other')])[0]
    assert not result.successful  # topics are read-only
    assert monitor.detector.config.weight_video == 0.3

    # Moving weight between two signals in one call keeps the sum at 1.
    results = monitor.set_parameters_atomically([Parameter('weight_video', value=0.25),
                                                 Parameter('weight_webrtc', value=0.25)])
    assert results.successful
    assert (monitor.detector.config.weight_video, monitor.detector.config.weight_webrtc) == \
        (0.25, 0.25)
    assert monitor.set_parameters([Parameter('off_hold_s', value=2.0),
                                   Parameter('status_period_s', value=0.5)])[0].successful
    assert monitor.detector.config.off_hold_s == 2.0
    assert monitor.detector.config.joystick_axis_rest == ()
    assert monitor.set_parameters([Parameter('joystick_axis_rest', value=[0.0, 1.0])])[0] \
        .successful
    assert monitor.detector.config.joystick_axis_rest == (0.0, 1.0)


@BOTH_INPUT_MODES
def test_outside_video_subscribers_of_a_live_topic_count(harness: RosHarness,
                                                        poll_hz: float) -> None:
    recorder = Recorder(harness)
    make_monitor(harness, graph_period_s=0.1, input_poll_hz=poll_hz)
    camera = harness.node('camera')
    pub = camera.create_publisher(CompressedImage, VIDEO_TOPIC, qos_profile_sensor_data)
    frame = CompressedImage(format='jpeg', data=bytes(50_000))
    camera.create_timer(1.0 / 15.0, lambda: pub.publish(frame))
    # The streamer's own subscription is counted through its status, not the graph.
    harness.node('webrtc_streamer').create_subscription(
        CompressedImage, VIDEO_TOPIC, lambda _m: None, qos_profile_sensor_data)
    time.sleep(1.0)
    assert recorder.latest().active_video_streams == 0
    # With no outside viewer the monitor does not subscribe: only the streamer is there.
    assert camera.count_subscribers(VIDEO_TOPIC) == 1
    viewer = harness.node('viewer')
    viewer.create_subscription(CompressedImage, VIDEO_TOPIC, lambda _m: None,
                               qos_profile_sensor_data)
    assert wait_for(lambda: recorder.latest().active_video_streams == 1, 2.0)
    assert camera.count_subscribers(VIDEO_TOPIC) == 3  # streamer, viewer, monitor
    assert wait_for(lambda: recorder.latest().video_signal > 0.5, 2.0)
    assert not recorder.latest().active  # video alone is not a person driving
    harness.executor.remove_node(viewer)
    viewer.destroy_node()
    assert wait_for(lambda: recorder.latest().active_video_streams == 0, 2.0)
    assert wait_for(lambda: camera.count_subscribers(VIDEO_TOPIC) == 1, 2.0)


@BOTH_EXECUTORS
def test_streamer_status_drives_peers_video_and_latency(harness: RosHarness) -> None:
    recorder = Recorder(harness)
    make_monitor(harness, webrtc_status_timeout_s=0.5, off_hold_s=0.3, status_period_s=0.2)
    streamer = harness.node('fake_streamer')
    pub = streamer.create_publisher(WebRtcStatus, 'webrtc/status', STATUS_QOS)
    loops = streamer.create_publisher(CommandRoundTrip, 'teleop/command_round_trips',
                                      ROUND_TRIP_QOS)
    sending = threading.Event()
    sending.set()
    looping = threading.Event()
    looping.set()

    def publish() -> None:
        if not sending.is_set():
            return
        # Its ping round trip is liveness only: it must not become the latency signal.
        msg = WebRtcStatus(connected_peers=1, video_tracks_sending=1, round_trip_ms=5.0)
        msg.header.stamp = streamer.get_clock().now().to_msg()
        msg.round_trip_measured_at = msg.header.stamp
        pub.publish(msg)
        if looping.is_set():
            loop = CommandRoundTrip(operator_id='webrtc/p1', round_trip_ms=30.0)
            loop.header.stamp = msg.header.stamp
            loops.publish(loop)

    streamer.create_timer(0.1, publish)
    assert wait_for(lambda: recorder.latest() is not None
                    and recorder.latest().latency_signal == 1.0, 3.0)
    status = recorder.latest()
    assert (status.webrtc_peers, status.active_video_streams) == (1, 1)
    assert status.control_latency_ms == pytest.approx(30.0)
    looping.clear()  # the operator stops answering command acks: its loop goes stale (2 s)
    assert wait_for(lambda: math.isnan(recorder.latest().control_latency_ms), 4.0)
    # A peer watching video (0.5) but sending no command is present, not driving.
    assert wait_for(lambda: recorder.latest().score > 0.45, 3.0)  # the windows filled
    status = recorder.latest()
    assert status.operator_present and not status.teleop_active
    assert status.latency_signal == 0.0
    assert not any(m.active or m.teleop_active for _, m in recorder.statuses)
    sending.clear()  # the streamer vanishes
    assert wait_for(lambda: not recorder.latest().operator_present, 3.0)
    assert recorder.latest().webrtc_peers == 0
    assert math.isnan(recorder.latest().control_latency_ms)
    assert recorder.events == []


def test_a_joystick_whose_clock_is_2_s_off_is_detected(harness: RosHarness) -> None:
    recorder = Recorder(harness)
    make_monitor(harness, status_period_s=0.2)
    joystick = Joystick(harness)
    joystick.set_mode('zeros')
    time.sleep(0.3)
    joystick.set_mode('skewed')
    assert wait_for(lambda: recorder.latest() is not None and recorder.latest().teleop_active
                    and recorder.latest().active, 3.0)


def test_shutdown_ends_the_open_session(harness: RosHarness) -> None:
    recorder = Recorder(harness)
    monitor = make_monitor(harness)
    joystick = Joystick(harness)
    joystick.set_mode('moving')
    assert wait_for(lambda: recorder.latest() is not None and recorder.latest().active, 2.0)
    harness.executor.remove_node(monitor)
    monitor.destroy_node()
    assert wait_for(lambda: len(recorder.events) == 2, 2.0)
    assert json.loads(recorder.events[1].payload_json)['reason'] == 'shutdown'


@BOTH_EXECUTORS
def test_a_slow_poll_sees_the_end_of_a_hold_within_the_hold_poll_period(
        harness: RosHarness) -> None:
    # Polled at 1 Hz, the fall of the score is seen at a poll; the 0.5 s hold then ends between
    # two polls. The next poll would see it 0.5 s late; the hold timer (20 Hz) within 50 ms.
    recorder = Recorder(harness)
    make_monitor(harness, off_hold_s=0.5, input_poll_hz=1.0, hold_poll_hz=20.0)
    joystick = Joystick(harness)
    joystick.set_mode('moving')
    assert wait_for(lambda: recorder.latest() is not None and recorder.latest().active, 3.0)
    time.sleep(1.0)
    joystick.set_mode('zeros')
    time.sleep(0.1)
    last = joystick.last_moving
    # The event and the status travel on their own topics: wait for both.
    assert wait_for(lambda: len(recorder.events) == 2
                    and recorder.first_time(False, last) is not None, 4.0)
    inactive_at = recorder.first_time(False, last)
    wall_minus_mono = time.time() - time.monotonic()
    # ended_at is when the poll saw the score fall (wall clock); the hold ran from there.
    fell_at = json.loads(recorder.events[1].payload_json)['ended_at'] - wall_minus_mono
    assert fell_at > last
    assert 0.5 <= inactive_at - fell_at < 0.5 + 0.35  # the next 1 Hz poll: 0.5 + 0.5


def test_hold_poll_hz_must_be_positive(harness: RosHarness) -> None:
    with pytest.raises(ValueError, match='hold_poll_hz must be > 0'):
        make_monitor(harness, hold_poll_hz=0.0)


def test_a_launch_given_node_name_does_not_rename_the_input_reader_too() -> None:
    """`Node(name='teleop_monitor')` in a launch file passes a global `__node:=` rule."""
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.teleop.teleop_monitor', '--ros-args',
         '-r', '__ns:=/namecheck', '-r', '__node:=teleop_monitor'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        with ros_harness() as harness:
            def names() -> list[str]:
                return sorted(name for name, namespace
                              in harness.helper.get_node_names_and_namespaces()
                              if namespace == '/namecheck')

            assert wait_for(lambda: len(names()) >= 2, timeout=30.0), names()
            assert names() == ['teleop_monitor', 'teleop_monitor_inputs']
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
