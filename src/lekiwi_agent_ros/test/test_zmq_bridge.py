"""lekiwi_zmq_bridge: the relay core, the relay over real ZeroMQ sockets, and the node in ROS."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator

import pytest
from lekiwi_zmq_stand_ins import StandInLeKiwiClient, StandInLeKiwiHost, action, observation
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import RosHarness, ros_harness, wait_for
from webrtc_client import make_jpeg

from lekiwi_agent_ros.msg_types import (
    CommandRoundTrip,
    CompressedImage,
    Header,
    TeleopStatus,
    UInt16,
)
from lekiwi_agent_ros.teleop.teleop_monitor import (
    COMMANDS_QOS,
    COUNT_QOS,
    ROUND_TRIP_QOS,
    STATUS_QOS,
    TeleopMonitorNode,
)
from lekiwi_agent_ros.zmq_bridge.lekiwi_zmq_bridge import LekiwiZmqBridgeNode
from lekiwi_agent_ros.zmq_bridge.relay_core import (
    CommandConfig,
    CommandTracker,
    EffectTimer,
    battery_values,
    parse_observation,
)
from lekiwi_agent_ros.zmq_bridge.zmq_relay import RelayConfig, ZmqRelay


def frame(values: dict[str, float]) -> bytes:
    return json.dumps(values).encode()


def test_a_constant_action_stream_is_not_command_activity() -> None:
    tracker = CommandTracker(CommandConfig())
    assert [tracker.observe(frame(action())) for _ in range(30)] == [False] * 30
    # an idle leader arm's encoder noise, under the position epsilon, is not either
    assert not tracker.observe(frame(action(pan=0.4)))
    assert tracker.observe(frame(action(pan=3.0)))
    assert tracker.observe(frame(action(pan=3.0, x_vel=0.1)))
    assert not tracker.observe(frame(action(pan=3.0, x_vel=0.105)))
    assert (tracker.actions_total, tracker.changes_total) == (34, 2)


def test_a_changed_action_is_timed_until_an_observation_reflects_it() -> None:
    jpeg = make_jpeg()
    tracker = CommandTracker(CommandConfig())
    effects = EffectTimer(CommandConfig(), max_wait_s=1.0)
    tracker.observe(frame(action()))
    assert tracker.observe(frame(action(x_vel=0.3)))
    assert tracker.changed == {'x.vel': 0.3}
    effects.command(tracker.changed, 10.0, tracker.before)
    assert effects.running
    # Observations from before the base moved do not close it; the one that shows it does.
    assert effects.observation(observation(jpeg, **{'x.vel': 0.0}), 10.02) is None
    effects.command({'x.vel': 0.5}, 10.03)  # one measurement at a time: this one waits
    assert effects.observation(observation(jpeg, **{'x.vel': 0.295}), 10.08) == \
        pytest.approx(80.0)
    assert not effects.running
    assert effects.observation(observation(jpeg), 10.1) is None  # nothing runs: not read
    # Within a fifth of the step counts (a measured speed settles near the command); the
    # previous command's effect, still on its way while an operator ramps, does not.
    effects.command({'arm_shoulder_pan.pos': 40.0}, 20.0, {'arm_shoulder_pan.pos': 30.0})
    assert effects.observation(observation(jpeg, **{'arm_shoulder_pan.pos': 30.0}), 20.01) is None
    assert effects.observation(observation(jpeg, **{'arm_shoulder_pan.pos': 37.0}), 20.02) is None
    assert effects.observation(observation(jpeg, **{'arm_shoulder_pan.pos': 38.5}),
                               20.05) == pytest.approx(50.0)
    # Nothing reflects it within max_wait_s: dropped, no made-up round trip.
    effects.command({'x.vel': 0.9}, 30.0)
    assert effects.observation(observation(jpeg), 30.5) is None
    assert effects.observation(observation(jpeg, **{'x.vel': 0.9}), 31.2) is None
    assert effects.timed_out == 1 and not effects.running
    assert effects.observation(b'not json', 31.3) is None


def test_malformed_actions_are_counted_not_trusted() -> None:
    tracker = CommandTracker(CommandConfig())
    tracker.observe(frame(action()))
    assert not tracker.observe(b'\xff\x00 not json')
    assert not tracker.observe(b'[1, 2, 3]')
    assert tracker.malformed_total == 2
    assert tracker.observe(frame({**action(), 'x.vel': 0.5}))


def test_an_observation_gives_its_state_frames_and_battery() -> None:
    jpeg = make_jpeg()
    parsed = parse_observation(observation(jpeg, **{'battery.voltage': 12.1}))
    assert parsed is not None
    assert parsed.frames['front'] == jpeg and parsed.frames['wrist'] == jpeg[::-1]
    assert parsed.state['x.vel'] == 0.0
    assert battery_values(parsed.state) == {'voltage': 12.1}
    assert battery_values(parse_observation(observation(jpeg)).state) == {}  # stock host
    assert parse_observation(b'garbage') is None


@pytest.fixture
def host() -> Iterator[StandInLeKiwiHost]:
    host = StandInLeKiwiHost()
    yield host
    host.close()


def relay_config(host: StandInLeKiwiHost) -> RelayConfig:
    return RelayConfig(bind_address='127.0.0.1', command_port=0, observation_port=0,
                       host_command_port=host.command_port,
                       host_observation_port=host.observation_port)


def test_bytes_through_the_relay_are_identical_both_ways(host: StandInLeKiwiHost) -> None:
    seen_commands: list[bytes] = []
    seen_observations: list[bytes] = []
    relay = ZmqRelay(relay_config(host), seen_commands.append, seen_observations.append)
    relay.start()
    client = StandInLeKiwiClient(relay.command_port, relay.observation_port)
    try:
        assert wait_for(lambda: relay.operators.connected == 1
                        and relay.consumers.connected == 1, 10.0)
        jpeg = make_jpeg()
        payloads = [frame(action(x_vel=i / 10)) for i in range(10)]
        payloads += [os.urandom(n) for n in (1, 100, 4096, 60_000)] + [b'\x00' * 7, b'']
        for payload in payloads:
            client.send(payload)
            assert host.receive() == payload
        observations = [observation(jpeg, **{'x.vel': i / 10}) for i in range(5)]
        observations += [os.urandom(50_000), b'\x00\xff']
        for payload in observations:
            host.send(payload)
            assert client.receive() == payload
        # the relay thread hands each frame to its callback just after forwarding it
        assert wait_for(lambda: seen_commands == payloads
                        and seen_observations == observations, 5.0)
        assert relay.commands_forwarded == len(payloads)
        client.close()
        assert wait_for(lambda: relay.operators.connected == 0
                        and relay.consumers.connected == 0, 10.0)
    finally:
        relay.close()


def test_bad_relay_settings_are_refused() -> None:
    assert RelayConfig(command_port=70000).problems()
    assert RelayConfig(command_port=5, observation_port=5).problems()
    assert RelayConfig(host_command_port=0).problems()
    assert RelayConfig().problems() == []


@pytest.fixture
def harness() -> Iterator[RosHarness]:
    with ros_harness() as h:
        yield h


def make_bridge(harness: RosHarness, host: StandInLeKiwiHost, **params: object):
    settings = {'bind_address': '127.0.0.1', 'command_port': 0, 'observation_port': 0,
                'host_command_port': host.command_port,
                'host_observation_port': host.observation_port, **params}
    return harness.add(LekiwiZmqBridgeNode(
        namespace=harness.namespace, context=harness.context,
        parameter_overrides=[Parameter(k, value=v) for k, v in settings.items()]))


def test_the_monitor_sees_zmq_operators_and_only_changing_commands_as_driving(
        harness: RosHarness, host: StandInLeKiwiHost) -> None:
    bridge = make_bridge(harness, host)
    harness.add(TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                                  parameter_overrides=[Parameter('off_hold_s', value=0.3)]))
    statuses = harness.collect(TeleopStatus, 'teleop/status', STATUS_QOS)
    commands = harness.collect(Header, 'teleop/commands', COMMANDS_QOS)
    operators = harness.collect(UInt16, 'zmq_bridge/operators', COUNT_QOS)
    client = StandInLeKiwiClient(bridge.get_parameter('bound_command_port').value,
                                 bridge.get_parameter('bound_observation_port').value)
    try:
        assert wait_for(lambda: operators and operators[-1].data == 1, 10.0)
        assert wait_for(lambda: statuses and statuses[-1].operator_present, 5.0)
        # 2 s of one constant action at 30 Hz: relayed, but nobody drives.
        for _ in range(60):
            client.send_action(action())
            time.sleep(1 / 30)
        assert host.receive(1000) is not None
        assert commands == []
        assert not any(s.teleop_active for s in statuses)
        # Driving: the base velocity changes every command.
        started = time.monotonic()
        for i in range(60):
            client.send_action(action(x_vel=0.1 + 0.05 * (i % 5)))
            time.sleep(1 / 30)
            if statuses[-1].teleop_active:
                break
        assert statuses[-1].teleop_active, statuses[-1]
        assert time.monotonic() - started < 1.5
        assert commands and all(c.frame_id == 'zmq' for c in commands)
    finally:
        client.close()
    assert wait_for(lambda: operators[-1].data == 0, 10.0)
    assert wait_for(lambda: not statuses[-1].teleop_active
                    and not statuses[-1].operator_present, 6.0)


class LaggingHost:
    """The stand-in host applying each action `lag_s` late and observing at 30 Hz."""

    def __init__(self, host: StandInLeKiwiHost, lag_s: float) -> None:
        self.host, self.lag_s = host, lag_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        jpeg = make_jpeg()
        applied: list[tuple[float, float]] = [(0.0, 0.0)]  # (applies at, x.vel)
        while not self.stop.is_set():
            command = self.host.receive(timeout_ms=int(1000 / 30))
            if command is not None:
                applied.append((time.monotonic() + self.lag_s, json.loads(command)['x.vel']))
            now = time.monotonic()
            current = [v for t, v in applied if t <= now][-1]
            self.host.send(observation(jpeg, **{'x.vel': current}))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)


def test_zmq_command_round_trips_reach_the_monitor_and_diagnostics(
        harness: RosHarness, host: StandInLeKiwiHost) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    bridge = make_bridge(harness, host)
    harness.add(TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                                  parameter_overrides=[Parameter('status_period_s', value=0.2)]))
    round_trips = harness.collect(CommandRoundTrip, 'teleop/command_round_trips', ROUND_TRIP_QOS)
    statuses = harness.collect(TeleopStatus, 'teleop/status', STATUS_QOS)
    diagnostics = harness.collect(DiagnosticArray, '/diagnostics', 10)
    lagging = LaggingHost(host, lag_s=0.15)
    client = StandInLeKiwiClient(bridge.get_parameter('bound_command_port').value,
                                 bridge.get_parameter('bound_observation_port').value)
    try:
        assert wait_for(lambda: bridge.relay.operators.connected == 1, 10.0)
        deadline = time.monotonic() + 10.0
        i = 0
        while len(round_trips) < 3 and time.monotonic() < deadline:
            i += 1
            client.send_action(action(x_vel=0.05 * i))  # a ramp
            client.receive(100)
            time.sleep(1 / 30)
        assert len(round_trips) >= 3
        assert all(m.operator_id == 'zmq' and m.header.frame_id == 'zmq' for m in round_trips)
        # The host's 0.15 s lag is in every round trip, and little else (a loaded machine).
        assert all(150.0 <= m.round_trip_ms < 150.0 + 400.0 for m in round_trips), \
            [m.round_trip_ms for m in round_trips]
        assert wait_for(lambda: statuses and statuses[-1].control_latency_ms >= 150.0, 5.0)

        def zmq_rtt() -> str | None:
            for array in diagnostics:
                for status in array.status:
                    for value in status.values:
                        if value.key == 'command_rtt_ms[zmq]':
                            return value.value
            return None

        assert wait_for(lambda: zmq_rtt() is not None, 5.0)
        assert float(zmq_rtt()) >= 150.0
    finally:
        client.close()
        lagging.close()


def test_frames_are_published_on_demand_with_the_hosts_jpeg_bytes(
        harness: RosHarness, host: StandInLeKiwiHost) -> None:
    bridge = make_bridge(harness, host)
    client = StandInLeKiwiClient(bridge.get_parameter('bound_command_port').value,
                                 bridge.get_parameter('bound_observation_port').value)
    jpeg = make_jpeg()
    try:
        assert wait_for(lambda: bridge.relay.consumers.connected == 1, 10.0)
        frames = harness.collect(CompressedImage, 'zmq_bridge/front/image/compressed',
                                 qos_profile_sensor_data)
        for i in range(40):
            host.send(observation(jpeg, **{'x.vel': i * 0.01}))
            assert client.receive() is not None
            time.sleep(0.05)
            if frames:
                break
        assert frames and bytes(frames[-1].data) == jpeg and frames[-1].format == 'jpeg'
    finally:
        client.close()


def test_the_bridge_refuses_bad_parameters(harness: RosHarness,
                                           host: StandInLeKiwiHost) -> None:
    with pytest.raises(ValueError, match='host_command_port'):
        make_bridge(harness, host, host_command_port=0)


def test_observation_frames_carry_base64_jpegs() -> None:
    jpeg = make_jpeg()
    decoded = json.loads(observation(jpeg))
    assert base64.b64decode(decoded['front']) == jpeg
