"""LekiwiZmqBridgeNode: a stock LeRobot LeKiwi (ZeroMQ, no ROS) seen through ROS topics.

On a stock LeKiwi the operator's `LeKiwiClient` drives `lekiwi_host.py` over ZeroMQ, and no
`joy`, camera or battery topic exists. Move the host to other ports (`--port_zmq_cmd 15555
--port_zmq_observations 15556`) and start this node: it binds the public ports, relays every
frame unchanged both ways (`ZmqRelay`, its own thread) and publishes what it saw:
- `teleop/commands` (std_msgs/Header, frame_id `zmq`): one message per 0.1 s in which an
  action changed a value (a client repeating one action is no command activity);
- `zmq_bridge/operators`, `zmq_bridge/observation_consumers` (std_msgs/UInt16, reliable,
  transient-local): peers connected to the command and the observation socket;
- `zmq_bridge/<camera>/image/compressed` (CompressedImage): the observation's JPEG frames,
  decoded only while someone subscribes;
- `battery_state` (BatteryState) when the observation carries battery values;
- `teleop/command_round_trips` (CommandRoundTrip, operator `zmq`): a changed action's round
  trip, from the relay forwarding it to the first observation that reflects it (`EffectTimer`),
  at most every 0.5 s. A PULL socket does not say which peer sent an action, so the ZeroMQ
  operators are one operator here (LeRobot's host serves one client at a time anyway).
The teleop monitor takes `teleop/commands` and the two counts beside joystick, video and WebRTC.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from lekiwi_agent_ros.msg_types import (
    BatteryState,
    CommandRoundTrip,
    CompressedImage,
    Header,
    UInt16,
)
from lekiwi_agent_ros.node_runner import run_nodes
from lekiwi_agent_ros.teleop.round_trips import RoundTripThrottle
from lekiwi_agent_ros.teleop.teleop_monitor import COMMANDS_QOS, COUNT_QOS, ROUND_TRIP_QOS
from lekiwi_agent_ros.zmq_bridge.relay_core import (
    CommandConfig,
    CommandTracker,
    EffectTimer,
    battery_values,
    parse_observation,
)
from lekiwi_agent_ros.zmq_bridge.zmq_relay import RelayConfig, ZmqRelay

_TICK_S = 0.1
ZMQ_OPERATOR = 'zmq'


class LekiwiZmqBridgeNode(Node):
    """Relay a LeKiwi host's ZeroMQ streams and publish what they show about operators."""

    def __init__(self, node_name: str = 'lekiwi_zmq_bridge', **node_kwargs: object) -> None:
        """Declare parameters, bind the relay, create topics and timers, start relaying."""
        super().__init__(node_name, **node_kwargs)  # type: ignore[arg-type]
        self._relay: ZmqRelay | None = None
        try:
            self._setup()
        except BaseException:
            super().destroy_node()
            raise

    def _setup(self) -> None:
        def declare(name: str, default: Any, description: str) -> Any:
            descriptor = ParameterDescriptor(description=description, read_only=True)
            return self.declare_parameter(name, default, descriptor).value

        config = RelayConfig(
            bind_address=str(declare('bind_address', '*', 'Address the public ports bind to.')),
            command_port=int(declare('command_port', 5555,
                                     'Public command port operators connect to (0: any).')),
            observation_port=int(declare('observation_port', 5556,
                                         'Public observation port (0: any).')),
            host_address=str(declare('host_address', '127.0.0.1', 'Where lekiwi_host runs.')),
            host_command_port=int(declare('host_command_port', 15555,
                                          "lekiwi_host's command port, moved off 5555.")),
            host_observation_port=int(declare('host_observation_port', 15556,
                                              "lekiwi_host's observation port, moved off 5556.")),
        )
        commands = CommandConfig(
            position_epsilon=float(declare('position_epsilon', 1.0,
                                           'A *.pos action must move this much to count.')),
            velocity_epsilon=float(declare('velocity_epsilon', 0.01,
                                           'Any other action value must move this much.')),
        )
        cameras = [c for c in declare('cameras', ['front', 'wrist'],
                                      'Camera keys of the observation to publish.') if c]
        state_period_s = float(declare('state_period_s', 1.0,
                                       'How often (s) battery values are read from observations.'))
        frame_rate_hz = float(declare('frame_rate_hz', 15.0,
                                      'Most frames per second published per camera.'))
        effect_wait_s = float(declare(
            'effect_timeout_s', 1.0,
            'A changed action no observation reflects within this long (s) gives no round '
            'trip.'))
        problems = config.problems()
        if state_period_s <= 0 or frame_rate_hz <= 0 or effect_wait_s <= 0:
            problems.append('state_period_s, frame_rate_hz and effect_timeout_s must be > 0')
        if problems:
            raise ValueError('invalid lekiwi_zmq_bridge parameters: ' + '; '.join(problems))

        self._tracker = CommandTracker(commands)
        self._effects = EffectTimer(commands, effect_wait_s)  # relay thread only
        self._round_trips: list[float] = []  # measured (relay thread), published by _tick
        self._round_trip_throttle = RoundTripThrottle(0.5, time.monotonic)
        self._lock = threading.Lock()  # the relay thread writes these, timers read them
        self._changes = 0
        self._latest_observation: bytes | None = None
        self._observation_serial = 0
        self._published_serial = 0
        self._counts: tuple[int, int] | None = None

        self._commands_pub = self.create_publisher(Header, 'teleop/commands', COMMANDS_QOS)
        self._operators_pub = self.create_publisher(UInt16, 'zmq_bridge/operators', COUNT_QOS)
        self._consumers_pub = self.create_publisher(
            UInt16, 'zmq_bridge/observation_consumers', COUNT_QOS)
        self._frame_pubs = {
            camera: self.create_publisher(CompressedImage,
                                          f'zmq_bridge/{camera}/image/compressed',
                                          qos_profile_sensor_data)
            for camera in cameras}
        self._battery_pub = self.create_publisher(BatteryState, 'battery_state',
                                                  qos_profile_sensor_data)
        self._round_trip_pub = self.create_publisher(
            CommandRoundTrip, 'teleop/command_round_trips', ROUND_TRIP_QOS)

        self._relay = ZmqRelay(config, self._on_command, self._on_observation)
        for name, port in (('bound_command_port', self._relay.command_port),
                           ('bound_observation_port', self._relay.observation_port)):
            self.declare_parameter(name, port, ParameterDescriptor(
                description='The port actually bound (read back when 0 was asked).',
                read_only=True))
        self.create_timer(_TICK_S, self._tick)
        self.create_timer(1.0 / frame_rate_hz, self._publish_frames)
        self.create_timer(state_period_s, self._publish_state)
        self.create_timer(1.0, self._publish_counts_anyway)
        self._relay.start()
        self.get_logger().info(
            f'relaying LeKiwi ZeroMQ: operators -> :{self._relay.command_port} -> '
            f'{config.host_address}:{config.host_command_port}; '
            f'{config.host_address}:{config.host_observation_port} -> '
            f':{self._relay.observation_port} -> operators')

    @property
    def relay(self) -> ZmqRelay:
        """Return the relay (its counters; tests and diagnostics)."""
        assert self._relay is not None
        return self._relay

    # ---- called in the relay thread: keep them short ----
    def _on_command(self, frame: bytes) -> None:
        if self._tracker.observe(frame):
            self._effects.command(self._tracker.changed, time.monotonic(), self._tracker.before)
            with self._lock:
                self._changes += 1

    def _on_observation(self, frame: bytes) -> None:
        rtt = self._effects.observation(frame, time.monotonic())
        with self._lock:
            self._latest_observation = frame
            self._observation_serial += 1
            if rtt is not None:
                self._round_trips.append(rtt)

    # ---- timers ----
    def _tick(self) -> None:
        with self._lock:
            changes, self._changes = self._changes, 0
            round_trips, self._round_trips = self._round_trips, []
        if changes:
            msg = Header(frame_id='zmq')
            msg.stamp = self.get_clock().now().to_msg()
            self._commands_pub.publish(msg)
        if round_trips:  # the newest sample is the one reported
            self._round_trip_throttle.record(ZMQ_OPERATOR, round_trips[-1])
        for operator, rtt in self._round_trip_throttle.due():
            out = CommandRoundTrip(operator_id=operator, round_trip_ms=rtt)
            out.header.stamp = self.get_clock().now().to_msg()
            out.header.frame_id = 'zmq'
            self._round_trip_pub.publish(out)
        self._publish_counts(force=False)

    def _publish_counts_anyway(self) -> None:
        self._publish_counts(force=True)

    def _publish_counts(self, force: bool) -> None:
        relay = self.relay
        counts = (relay.operators.connected, relay.consumers.connected)
        if counts == self._counts and not force:
            return
        self._counts = counts
        self._operators_pub.publish(UInt16(data=min(counts[0], 65535)))
        self._consumers_pub.publish(UInt16(data=min(counts[1], 65535)))

    def _take_new_observation(self) -> bytes | None:
        with self._lock:
            if self._observation_serial == self._published_serial:
                return None
            self._published_serial = self._observation_serial
            return self._latest_observation

    def _publish_frames(self) -> None:
        wanted = [c for c, pub in self._frame_pubs.items() if pub.get_subscription_count()]
        if not wanted:
            return  # on demand only: nobody watches, nothing is decoded
        frame = self._take_new_observation()
        observation = parse_observation(frame) if frame is not None else None
        if observation is None:
            return
        stamp = self.get_clock().now().to_msg()
        for camera in wanted:
            jpeg = observation.frames.get(camera)
            if jpeg is not None:
                msg = CompressedImage(format='jpeg', data=jpeg)
                msg.header.stamp = stamp
                msg.header.frame_id = camera
                self._frame_pubs[camera].publish(msg)

    def _publish_state(self) -> None:
        with self._lock:
            frame = self._latest_observation
        observation = parse_observation(frame) if frame is not None else None
        if observation is None:
            return
        values = battery_values(observation.state)
        if not values:
            return  # a stock LeKiwi host sends no battery values
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        nan = float('nan')
        msg.voltage = values.get('voltage', nan)
        msg.current = values.get('current', nan)
        percentage = values.get('percentage', nan)
        msg.percentage = percentage / 100.0 if percentage > 1.0 else percentage
        msg.present = True
        self._battery_pub.publish(msg)

    def destroy_node(self) -> None:
        """Stop relaying, then destroy the node."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the bridge in its own process."""
    return run_nodes(lambda: [LekiwiZmqBridgeNode()], args, 'lekiwi_zmq_bridge')


if __name__ == '__main__':
    sys.exit(main())
