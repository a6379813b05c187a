"""TeleopMonitorNode: joystick, video, WebRTC status and the ROS graph -> teleop/status and events.

A thin shell around `TeleopDetector`. It runs inside the one-process agent on the agent's
executor, so every callback is short and nothing blocks or spawns threads. Each executor
wake-up costs far more than the detector's arithmetic, so the node keeps them few:
- by default the joystick and video topics are polled (`input_poll_hz`, 5 Hz): their messages
  wait in the DDS readers and one timer takes them all, then evaluates (see polled_input.py;
  this costs a third of a callback per message and adds at most one poll period to detection);
  while a hold runs (the score has crossed a threshold and a session is about to start or end)
  a second timer polls at `hold_poll_hz`, so the change is seen soon after the hold ends;
- with `input_poll_hz: 0` joystick messages drive the evaluation through callbacks while they
  flow; the evaluation timer (`evaluate_rate_hz`) fires only when they stop, and is cancelled
  while there is no evidence at all;
- a video topic is subscribed (raw: frames are never deserialised, only their arrival counts)
  only while the ROS graph shows an outside viewer on it, because without one its frames cannot
  change the video signal, and a subscription of ours would make a camera driver compress
  frames nobody watches;
- one slow timer polls the graph and publishes the status every `status_period_s`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, fields

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.serialization import deserialize_message
from rclpy.subscription import Subscription
from rclpy.timer import Timer

from lekiwi_agent_ros.boot_id import resolve_boot_id
from lekiwi_agent_ros.diagnostics import Status, teleop_statuses
from lekiwi_agent_ros.diagnostics_ros import DiagnosticsPublisher
from lekiwi_agent_ros.msg_types import (
    CommandRoundTrip,
    CompressedImage,
    FleetEvent,
    Header,
    Image,
    Joy,
    TeleopStatus,
    UInt16,
    WebRtcStatus,
)
from lekiwi_agent_ros.node_runner import run_nodes
from lekiwi_agent_ros.polled_input import InputReader, PolledSubscription
from lekiwi_agent_ros.teleop.joy_cdr import JoyDecodeError, decode_joy
from lekiwi_agent_ros.teleop.teleop_detector import (
    SessionChange,
    TeleopConfig,
    TeleopDetector,
    TeleopReading,
)

STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        history=HistoryPolicy.KEEP_LAST)
# Session events follow the durable contract of fleet/events (README): transient-local, so an
# uplink that restarts (one_process:=false) still receives the sessions of its downtime.
EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        history=HistoryPolicy.KEEP_LAST)
# Polled joystick messages wait here between polls: room for 100 Hz at a 5 Hz poll.
POLLED_JOY_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT,
                            durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# Command activity of other channels (lekiwi_zmq_bridge: one Header per 0.1 s with a change)
# and operator counts (reliable, transient-local: a late monitor still learns the count).
COMMANDS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
# Per-operator command round trips (webrtc_streamer, lekiwi_zmq_bridge: at most 2 Hz each).
ROUND_TRIP_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.VOLATILE,
                            history=HistoryPolicy.KEEP_LAST)
COUNT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL,
                       history=HistoryPolicy.KEEP_LAST)
OPERATOR_COUNT_TOPICS = {'zmq_bridge/operators': 'zmq',
                         'zmq_bridge/observation_consumers': 'zmq_observers'}
VIDEO_TYPES = {'sensor_msgs/msg/Image': Image,
               'sensor_msgs/msg/CompressedImage': CompressedImage}

_DETECTOR_DESCRIPTIONS = {
    'weight_joystick': 'Weight of the joystick signal in the score (weights sum to 1).',
    'weight_video': 'Weight of the video signal (WebRTC tracks and outside video subscribers).',
    'weight_webrtc': 'Weight of the connected WebRTC operator peers signal.',
    'weight_latency': 'Weight of the fresh command round-trip signal (best operator).',
    'joystick_window_s': 'Sliding window (s) over which joystick input is counted.',
    'joystick_full_rate_hz': 'Rate (Hz) of joystick messages with input that makes the signal 1.',
    'joystick_deadzone': 'An axis must leave its rest value by more than this to be input.',
    'joystick_axis_rest': 'Rest value of each axis (e.g. 1.0 for gamepad triggers); missing: the '
                          'first message\'s value (rest poses are learned, see next).',
    'joystick_rest_learn_s': 'A joystick pose held perfectly still this long (s) becomes its '
                             'rest pose (an idle pad is not a person).',
    'command_idle_s': 'teleop_active ends once no command has come for this long (s), '
                      'whatever video and peers say.',
    'joystick_max_age_s': 'A joystick stamp further than this (s) from the robot clock is '
                          'reported once as clock skew (freshness is the receipt time).',
    'stamp_max_future_s': 'Messages stamped further ahead than this (s) are ignored.',
    'video_window_s': 'Sliding window (s) averaging the video signal.',
    'video_full_streams': 'Video streams leaving the robot that make the video signal 1.',
    'video_frame_timeout_s': 'A video topic without a frame for this long (s) is not live.',
    'webrtc_window_s': 'Sliding window (s) averaging the WebRTC peers signal.',
    'webrtc_full_peers': 'Connected operator peers that make the WebRTC signal 1.',
    'webrtc_status_timeout_s': 'Streamer status older than this (s) means the streamer is gone.',
    'latency_threshold_ms': 'Round trip (ms) under which the latency signal is 1 (0 at twice).',
    'latency_max_age_s': 'A round trip measured longer ago than this (s) is not fresh.',
    'on_threshold': 'Score at or above which, held for on_hold_s, teleop turns active.',
    'off_threshold': 'Score below which, held for off_hold_s, teleop turns inactive.',
    'on_hold_s': 'How long (s) the score must stay at or above on_threshold.',
    'off_hold_s': 'How long (s) the score must stay below off_threshold to end a session.',
}
_DETECTOR_NAMES = tuple(f.name for f in fields(TeleopConfig))
_NODE_RATES = ('evaluate_rate_hz', 'hold_poll_hz', 'status_period_s', 'graph_period_s')
_NODE_NON_NEGATIVE = ('input_poll_hz',)


class TeleopMonitorNode(Node):
    """Publish whether a person is teleoperating the robot, and its sessions."""

    def __init__(
        self,
        node_name: str = 'teleop_monitor',
        *,
        boot_id: str | None = None,
        **node_kwargs: object,
    ) -> None:
        """Declare parameters, build the detector, then create topics and timers."""
        super().__init__(node_name, **node_kwargs)  # type: ignore[arg-type]
        try:
            self._setup(boot_id)
        except BaseException:
            super().destroy_node()  # a refused configuration must not leave an rcl node behind
            raise

    def _setup(self, boot_id: str | None) -> None:
        """Declare parameters, build the detector, then create topics and timers."""
        self._declare_parameters()
        config = TeleopConfig.from_mapping(self._detector_parameters())
        problems = self._node_problems({n: self.get_parameter(n).value for n in _NODE_RATES})
        problems += self._node_problems(
            {n: self.get_parameter(n).value for n in _NODE_NON_NEGATIVE}, allow_zero=True)
        if problems:
            raise ValueError('invalid teleop_monitor parameters: ' + '; '.join(problems))
        self._detector = TeleopDetector(config, time.monotonic, time.time)
        self._robot_id = str(self.get_parameter('robot_id').value)
        self._boot_id = resolve_boot_id(self, boot_id)
        self._sequence = 0
        self._status_period_s = float(self.get_parameter('status_period_s').value)
        self._video_topics = [
            t for t in self.get_parameter('video_topics').value if t]  # type: ignore[union-attr]
        self._ignored = set(self.get_parameter('ignored_video_subscribers').value or ())
        self._video_subs: dict[str, Subscription | PolledSubscription] = {}
        self._last_key: tuple[bool, bool, int, int] | None = None
        self._skew_warned = False
        self._eval_period_s = 1.0 / float(self.get_parameter('evaluate_rate_hz').value)

        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._status_pub = self.create_publisher(TeleopStatus, 'teleop/status', STATUS_QOS)
        self._events_pub = self.create_publisher(FleetEvent, 'fleet/events', EVENTS_QOS)
        joy_topic = str(self.get_parameter('joy_topic').value)
        poll_hz = float(self.get_parameter('input_poll_hz').value)
        self._inputs: InputReader | None = None
        self._joy_input: PolledSubscription | None = None
        self._hold_timer: Timer | None = None
        if poll_hz > 0:
            self._inputs = InputReader(self)
            # Raw: joy_cdr reads the few fields needed faster than rclpy builds a Joy.
            self._joy_input = self._inputs.subscribe(Joy, joy_topic, POLLED_JOY_QOS, raw=True)
            # Runs only while a hold does (see _follow_hold).
            self._hold_timer = self.create_timer(
                1.0 / float(self.get_parameter('hold_poll_hz').value), self._poll_inputs)
            self._hold_timer.cancel()
        else:
            self.create_subscription(Joy, joy_topic, self._on_joy, qos_profile_sensor_data)
        self.create_subscription(WebRtcStatus, 'webrtc/status', self._on_webrtc_status,
                                 STATUS_QOS)
        self.create_subscription(Header, 'teleop/commands', self._on_command, COMMANDS_QOS)
        self.create_subscription(CommandRoundTrip, 'teleop/command_round_trips',
                                 self._on_round_trip, ROUND_TRIP_QOS)
        for topic, source in OPERATOR_COUNT_TOPICS.items():
            self.create_subscription(UInt16, topic,
                                     lambda msg, s=source: self._on_operators(s, msg),
                                     COUNT_QOS)
        # Polling: the poll timer evaluates; callbacks: a timer for when messages stop.
        self._eval_timer = self.create_timer(
            1.0 / poll_hz if poll_hz > 0 else self._eval_period_s,
            self._poll_inputs if poll_hz > 0 else self._evaluate)
        self._status_timer = self.create_timer(self._status_period_s, self._publish_due_status)
        self.create_timer(float(self.get_parameter('graph_period_s').value), self._poll_graph)
        self._last_reading: TeleopReading | None = None
        self._diagnostics = DiagnosticsPublisher(self, self._diagnostic_statuses)
        self._poll_graph()
        self._evaluate()

    @property
    def boot_id(self) -> str:
        """Return the boot id stamped on this node's events."""
        return self._boot_id

    @property
    def detector(self) -> TeleopDetector:
        """Return the detector core (read-only use: its config and state)."""
        return self._detector

    def destroy_node(self) -> None:
        """End an open session (reason 'shutdown') before the node goes away."""
        ended = self._detector.end_session('shutdown')
        if ended is not None and self.context.ok():
            self._publish_event(ended)
            reading, _ = self._detector.update()
            self._publish_status(reading)
        if self._inputs is not None:
            self._inputs.destroy()
        super().destroy_node()

    def _declare_parameters(self) -> None:
        """Declare every parameter in one place, with its default and description."""
        defaults = asdict(TeleopConfig())

        def declare(name: str, value: object, description: str, read_only: bool = False,
                    **extra: object) -> None:
            descriptor = ParameterDescriptor(description=description, read_only=read_only,
                                             **extra)  # type: ignore[arg-type]
            self.declare_parameter(name, value, descriptor)

        declare('robot_id', 'kiwi-001', 'Robot id stamped on fleet events.', True)
        declare('joy_topic', 'joy', 'Joystick topic (sensor_msgs/Joy).', True)
        declare('video_topics', ['camera/front/image_raw/compressed'],
                'Video topics (Image or CompressedImage; type read from the ROS graph).', True)
        declare('ignored_video_subscribers',
                ['webrtc_streamer', 'teleop_monitor', 'heartbeat', 'telemetry', 'fleet_uplink',
                 'agent'],
                'Node names whose video subscriptions are not outside viewers (the streamer '
                'is counted through its own status).', True)
        declare('input_poll_hz', 5.0,
                'How often (Hz) the joystick and video topics are polled; 0: a callback per '
                'message (more CPU, a poll period less detection delay).', True)
        declare('hold_poll_hz', 20.0,
                'How often (Hz) they are polled while a session is about to start or end '
                '(the score crossed a threshold and waits out its hold).', True)
        declare('evaluate_rate_hz', 10.0,
                'How often (Hz) the detector is evaluated while no joystick message arrives '
                '(each message is evaluated at once).', True)
        declare('status_period_s', 1.0, 'teleop/status is published at least this often (s).')
        declare('graph_period_s', 1.0, 'How often (s) video subscribers are read from the graph.',
                True)
        for name in _DETECTOR_NAMES:
            value = defaults[name]
            if value == ():
                # rclpy infers BYTE_ARRAY from an empty list: declare the type instead.
                declare(name, Parameter.Type.DOUBLE_ARRAY, _DETECTOR_DESCRIPTIONS[name])
            elif isinstance(value, tuple):
                declare(name, list(value), _DETECTOR_DESCRIPTIONS[name])
            else:
                declare(name, value, _DETECTOR_DESCRIPTIONS[name])

    def _detector_parameters(self) -> dict[str, object]:
        """Return the detector's parameter values (an unset array reads as empty)."""
        return {name: self.get_parameter_or(name, Parameter(name, value=[])).value
                for name in _DETECTOR_NAMES}

    @staticmethod
    def _node_problems(values: dict[str, object], allow_zero: bool = False) -> list[str]:
        """List what is wrong with the node's own rates and periods."""
        found = []
        for name, value in values.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0 \
                    or (value == 0 and not allow_zero):
                found.append(f'{name} must be {">= 0" if allow_zero else "> 0"}, got {value!r}')
        return found

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject a change that would leave the detector or node misconfigured."""
        detector_values = {n: getattr(self._detector.config, n) for n in _DETECTOR_NAMES}
        node_values: dict[str, object] = {}
        for param in params:
            if param.name in detector_values:
                detector_values[param.name] = param.value
            elif param.name in _NODE_RATES:
                node_values[param.name] = param.value
        problems = self._node_problems(node_values)
        try:
            TeleopConfig.from_mapping(detector_values)
        except ValueError as exc:
            problems.append(str(exc))
        return SetParametersResult(successful=not problems, reason='; '.join(problems))

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Hand an accepted change to the detector."""
        names = {p.name for p in params}
        if names & set(_DETECTOR_NAMES):
            self._detector.reconfigure(TeleopConfig.from_mapping(self._detector_parameters()))
        if 'status_period_s' in names:
            self._status_period_s = float(self.get_parameter('status_period_s').value)
            self.destroy_timer(self._status_timer)
            self._status_timer = self.create_timer(self._status_period_s,
                                                   self._publish_due_status)
        self._stir()

    def _stamp_age_s(self, sec: int, nanosec: int, now_ns: int | None = None) -> float | None:
        """Return how old a header stamp is (s), or None for an unset (zero) stamp."""
        if sec == 0 and nanosec == 0:
            return None
        if now_ns is None:
            now_ns = self.get_clock().now().nanoseconds
        return (now_ns - (sec * 1_000_000_000 + nanosec)) * 1e-9

    def _stir(self) -> None:
        """New evidence arrived: make sure the evaluation timer runs."""
        if self._eval_timer.is_canceled():
            self._eval_timer.reset()

    def _observe_joy(self, msg: Joy) -> bool:
        """Feed one joystick message to the detector; say whether it counted as input."""
        stamp = msg.header.stamp
        age = self._stamp_age_s(stamp.sec, stamp.nanosec)
        self._check_skew(age)
        return self._detector.observe_joy(msg.axes, msg.buttons, age)

    def _check_skew(self, age_s: float | None) -> None:
        """Warn once when joystick stamps disagree with this clock (they do not gate input)."""
        if self._skew_warned or age_s is None:
            return
        cfg = self._detector.config
        if not -cfg.stamp_max_future_s <= age_s <= cfg.joystick_max_age_s:
            self._skew_warned = True
            self.get_logger().warning(
                f'joystick stamps are {age_s:+.3f} s off this clock (a publisher clock not in '
                'sync?); teleop detection uses the time of receipt, so input still counts')

    def _poll_inputs(self) -> None:
        """Take every joystick message and video frame waiting, then evaluate (poll timer)."""
        assert self._joy_input is not None
        evidence = False
        now_ns = self.get_clock().now().nanoseconds
        for raw in self._joy_input.take_all():
            try:
                joy = decode_joy(raw)
                sec, nanosec, axes, buttons = (joy.stamp_sec, joy.stamp_nanosec, joy.axes,
                                               joy.buttons)
            except JoyDecodeError:  # not plain little-endian CDR: let rclpy decode it
                msg = deserialize_message(raw, Joy)
                sec, nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
                axes, buttons = msg.axes, msg.buttons
            age = self._stamp_age_s(sec, nanosec, now_ns)
            self._check_skew(age)
            counted = self._detector.observe_joy(axes, buttons, age)
            evidence = counted or evidence
        for topic, subscription in self._video_subs.items():
            if subscription.take_all():  # type: ignore[union-attr]
                self._detector.observe_video_frame(topic)  # the topic is live: once is enough
                evidence = True
        if evidence or not self._detector.quiescent():
            self._evaluate()

    def _on_joy(self, msg: Joy) -> None:
        """Feed one joystick message to the detector; let flowing messages drive evaluation."""
        if self._observe_joy(msg):
            self._stir()
        elif self._eval_timer.is_canceled():
            return  # no evidence anywhere, and this message adds none
        # An evaluation costs microseconds, the wake-up that brought the message far more:
        # evaluating on every message gives the finest timing for free.
        self._evaluate()
        if not self._eval_timer.is_canceled():
            # Restart the timer's period: it fires only once messages stop coming.
            self._eval_timer.reset()

    def _on_command(self, _msg: Header) -> None:
        """Count one command of another channel (its receipt time, as for the joystick)."""
        self._detector.observe_command()
        self._stir()
        self._evaluate()

    def _on_operators(self, source: str, msg: UInt16) -> None:
        """Take the operators connected through another channel (ZeroMQ)."""
        self._detector.set_operators(source, int(msg.data))
        self._stir()
        self._evaluate()

    def _on_video_frame(self, topic: str) -> None:
        """Note a live frame on a video topic."""
        self._detector.observe_video_frame(topic)
        self._stir()

    def _on_round_trip(self, msg: CommandRoundTrip) -> None:
        """Take one operator's command round trip (the latency signal)."""
        age = self._stamp_age_s(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if self._detector.observe_round_trip(msg.operator_id, float(msg.round_trip_ms), age):
            self._stir()

    def _on_webrtc_status(self, msg: WebRtcStatus) -> None:
        """Feed the streamer's status to the detector (its ping is liveness, not latency)."""
        status_age = self._stamp_age_s(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if self._detector.observe_webrtc(
                msg.connected_peers, msg.video_tracks_sending,
                math.inf if status_age is None else status_age):
            self._stir()
            self._evaluate()  # a peer that left is reported at once, not at the next tick

    def _poll_graph(self) -> None:
        """Count outside viewers of each video topic; watch its frames only while it has some."""
        for topic in self._video_topics:
            outside = 0
            own = {self.get_name()} | ({self._inputs.name} if self._inputs else set())
            for info in self.get_subscriptions_info_by_topic(topic):
                if info.node_name in self._ignored or (
                        info.node_name in own and info.node_namespace == self.get_namespace()):
                    continue
                outside += 1
            subscription = self._video_subs.get(topic)
            if outside and subscription is None:
                self._subscribe_video(topic)
            elif not outside and subscription is not None:
                self._video_subs.pop(topic)
                if isinstance(subscription, PolledSubscription):
                    subscription.destroy()
                else:
                    self.destroy_subscription(subscription)
            self._detector.set_video_subscribers(topic, outside)
            if outside:
                self._stir()

    def _subscribe_video(self, topic: str) -> None:
        """Create a raw subscription for a video topic whose publishers name its type."""
        for info in self.get_publishers_info_by_topic(topic):
            msg_type = VIDEO_TYPES.get(info.topic_type)
            if msg_type is None:
                continue
            # raw=True: the serialized bytes, so 50 KB frames are never turned into Python
            # messages; only their arrival is evidence.
            if self._inputs is not None:
                self._video_subs[topic] = self._inputs.subscribe(
                    msg_type, topic, qos_profile_sensor_data, raw=True)
            else:
                self._video_subs[topic] = self.create_subscription(
                    msg_type, topic, lambda _raw, t=topic: self._on_video_frame(t),
                    qos_profile_sensor_data, raw=True)
            self.get_logger().info(f'watching video topic {topic} ({info.topic_type})')
            return

    def _evaluate(self) -> None:
        """Evaluate the detector; publish events, and the status when it changed."""
        reading, change = self._detector.update()
        if change is not None:
            self._publish_event(change)
        key = (reading.active, reading.operator_present, reading.webrtc_peers,
               reading.active_video_streams)
        if change is not None or key != self._last_key:
            self._publish_status(reading)
        if self._inputs is None and self._detector.quiescent():
            # Callbacks: nothing can change until new evidence stirs the timer. (The poll timer
            # never stops: polling is how new evidence is found.)
            self._eval_timer.cancel()
        self._follow_hold()

    def _follow_hold(self) -> None:
        """Poll fast while a hold runs, at the base rate otherwise (polling mode)."""
        timer = self._hold_timer
        if timer is None:
            return
        if self._detector.hold_running():
            if timer.is_canceled():
                timer.reset()
        elif not timer.is_canceled():
            timer.cancel()

    def _publish_due_status(self) -> None:
        """Publish the periodic status (the slow timer)."""
        reading, change = self._detector.update()
        if change is not None:
            self._publish_event(change)
        self._publish_status(reading)
        self._follow_hold()

    def _diagnostic_statuses(self) -> list[Status]:
        reading = self._last_reading
        if reading is None:
            return []
        return teleop_statuses(self.get_name(), self._robot_id, reading,
                               self._detector.operators, self._detector.round_trips())

    def _publish_status(self, reading: TeleopReading) -> None:
        """Publish one TeleopStatus."""
        self._last_reading = reading
        msg = TeleopStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.active = reading.active
        msg.score = reading.score
        msg.joystick_signal = reading.joystick_signal
        msg.video_signal = reading.video_signal
        msg.webrtc_signal = reading.webrtc_signal
        msg.latency_signal = reading.latency_signal
        msg.joystick_rate_hz = reading.joystick_rate_hz
        msg.active_video_streams = min(reading.active_video_streams, 65535)
        msg.webrtc_peers = min(reading.webrtc_peers, 65535)
        msg.control_latency_ms = reading.control_latency_ms
        msg.teleop_active = reading.teleop_active
        msg.operator_present = reading.operator_present
        self._last_key = (reading.active, reading.operator_present, reading.webrtc_peers,
                          reading.active_video_streams)
        if reading.active_since is not None:
            sec = math.floor(reading.active_since)
            msg.active_since.sec = sec
            msg.active_since.nanosec = min(int((reading.active_since - sec) * 1e9), 999_999_999)
        self._status_pub.publish(msg)

    def _publish_event(self, change: SessionChange) -> None:
        """Publish a session start or end as a FleetEvent."""
        self._sequence += 1
        msg = FleetEvent()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.robot_id = self._robot_id
        msg.boot_id = self._boot_id
        msg.sequence = self._sequence
        msg.severity = FleetEvent.SEVERITY_INFO
        msg.event_type = change.event_type
        msg.payload_json = json.dumps(change.payload(), separators=(',', ':'))
        self._events_pub.publish(msg)
        self.get_logger().info(f'{change.event_type} {msg.payload_json}')


def main(args: list[str] | None = None) -> int:
    """Run the teleop monitor alone (the agent hosts it in its own process by default)."""
    return run_nodes(lambda: [TeleopMonitorNode()], args, 'teleop_monitor')


if __name__ == '__main__':
    sys.exit(main())
