"""HeartbeatNode with real rclpy: rate, sequence, state, resources, and another process hears it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time

import pytest
from agent_harness import AgentHarness, agent_harness, wait_for
from rclpy.qos import qos_profile_sensor_data

from lekiwi_agent_ros.msg_types import (
    BatteryState,
    DeploymentStatus,
    RobotHeartbeat,
    TeleopStatus,
)
from lekiwi_agent_ros.telemetry.heartbeat import (
    STATUS_QOS,
    HeartbeatNode,
    derive_state,
    resource_usage,
)

IDLE = RobotHeartbeat.STATE_IDLE


def test_state_rule() -> None:
    assert derive_state(True, False, None) == RobotHeartbeat.STATE_BOOTING
    assert derive_state(False, False, None) == IDLE
    assert derive_state(False, False, DeploymentStatus.PHASE_SUCCEEDED) == IDLE
    assert derive_state(True, True, None) == RobotHeartbeat.STATE_TELEOP
    assert derive_state(False, True, DeploymentStatus.PHASE_INSTALLING) == (
        RobotHeartbeat.STATE_UPDATING
    )
    assert derive_state(False, True, DeploymentStatus.PHASE_FAILED) == RobotHeartbeat.STATE_ERROR


def test_resource_usage_from_a_sample() -> None:
    usage = resource_usage(
        {'cpu_percent': 12.5, 'memory_used_bytes': 1024.0, 'disk_total_bytes': math.nan}
    )
    assert usage.cpu_percent == 12.5 and usage.memory_used_bytes == 1024
    assert usage.disk_total_bytes == 0
    assert math.isnan(resource_usage({'uptime_s': math.nan}).uptime_s)


def start(harness: AgentHarness, **parameters: object) -> HeartbeatNode:
    node = HeartbeatNode(boot_id='feedc0de00000001', **harness.kwargs(**parameters))
    harness.add(node)
    return node


def test_publishes_at_its_rate_with_consecutive_sequences() -> None:
    with agent_harness() as harness:
        received = harness.collect(RobotHeartbeat, 'fleet/heartbeat', STATUS_QOS)
        start(harness, rate_hz=20.0, robot_id='kiwi-042', software_version='1.2.3')
        assert wait_for(lambda: len(received) >= 1)
        first_at = time.monotonic()
        count_before = len(received)
        time.sleep(1.0)
        rate = (len(received) - count_before) / (time.monotonic() - first_at)
        assert 14.0 <= rate <= 26.0, rate
        sequences = [msg.sequence for msg in received]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        msg = received[-1]
        assert (msg.robot_id, msg.software_version, msg.boot_id) == (
            'kiwi-042',
            '1.2.3',
            'feedc0de00000001',
        )
        assert msg.agent_version.count('.') == 2
        assert msg.resources.memory_total_bytes > 0 and msg.resources.uptime_s > 0
        assert msg.header.stamp.sec > 1_700_000_000


def test_state_follows_teleop_and_deployment_status() -> None:
    with agent_harness() as harness:
        received = harness.collect(RobotHeartbeat, 'fleet/heartbeat', STATUS_QOS)
        start(harness, rate_hz=20.0, startup_grace_s=60.0, teleop_status_timeout_s=0.5)
        assert wait_for(lambda: received and received[-1].state == RobotHeartbeat.STATE_BOOTING)
        teleop = harness.helper.create_publisher(TeleopStatus, 'teleop/status', STATUS_QOS)
        teleop.publish(TeleopStatus(active=True, score=0.8))
        assert wait_for(lambda: received[-1].state == RobotHeartbeat.STATE_TELEOP)
        assert received[-1].teleop_active and received[-1].teleop_score == pytest.approx(0.8)
        # the monitor went quiet: after the timeout the robot no longer counts as driven
        assert wait_for(lambda: received[-1].state == IDLE, timeout=3.0)
        assert not received[-1].teleop_active
        deploy = harness.helper.create_publisher(DeploymentStatus, 'fleet/deployment_status', 10)
        assert wait_for(lambda: deploy.get_subscription_count() > 0)
        deploy.publish(DeploymentStatus(phase=DeploymentStatus.PHASE_INSTALLING))
        assert wait_for(lambda: received[-1].state == RobotHeartbeat.STATE_UPDATING)
        deploy.publish(DeploymentStatus(phase=DeploymentStatus.PHASE_FAILED))
        assert wait_for(lambda: received[-1].state == RobotHeartbeat.STATE_ERROR)


def test_battery_state_reaches_the_resources() -> None:
    with agent_harness() as harness:
        received = harness.collect(RobotHeartbeat, 'fleet/heartbeat', STATUS_QOS)
        start(harness, rate_hz=20.0)
        battery = harness.helper.create_publisher(
            BatteryState, 'battery_state', qos_profile_sensor_data
        )
        assert wait_for(lambda: battery.get_subscription_count() > 0)

        def charged() -> bool:
            battery.publish(BatteryState(voltage=12.25, percentage=0.75, present=True))
            return bool(received) and received[-1].resources.battery_percent == 75.0

        assert wait_for(charged)
        assert received[-1].resources.battery_voltage_v == pytest.approx(12.25)


@pytest.mark.parametrize(
    ('parameters', 'problem'),
    [({'rate_hz': 0.0}, 'rate_hz must be > 0'), ({'startup_grace_s': -1.0}, 'startup_grace_s')],
)
def test_invalid_parameters_are_refused(parameters: dict, problem: str) -> None:
    with agent_harness() as harness, pytest.raises(ValueError, match=problem):
        HeartbeatNode(**harness.kwargs(**parameters))


SUBSCRIBER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.node import Node
    from lekiwi_agent_ros.telemetry.heartbeat import STATUS_QOS
    from lekiwi_fleet_msgs.msg import RobotHeartbeat
    rclpy.init()
    node = Node('heartbeat_listener', namespace=sys.argv[1])
    got = []
    qos = STATUS_QOS
    qos.depth = 10  # keep-last 1 would let a late spin see only the newest of several
    node.create_subscription(RobotHeartbeat, 'fleet/heartbeat', got.append, qos)
    while len(got) < 3:
        rclpy.spin_once(node, timeout_sec=1.0)
    print('SEQ', ' '.join(str(m.sequence) for m in got), got[-1].robot_id, flush=True)
    """
)


def test_a_separate_process_receives_the_heartbeat() -> None:
    with agent_harness() as harness:
        start(harness, rate_hz=10.0, robot_id='kiwi-xproc')
        result = subprocess.run(
            [sys.executable, '-c', SUBSCRIBER, harness.namespace],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ),
        )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith('SEQ'))
    numbers = [int(x) for x in line.split()[1:4]]
    # In order, each once (a keep-last history may still skip one under load).
    assert numbers == sorted(set(numbers)) and len(numbers) == 3 and line.endswith('kiwi-xproc')


def test_main_runs_and_stops_on_sigint(tmp_path: object) -> None:
    import signal

    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.telemetry.heartbeat', '--ros-args', '-r',
         '__ns:=/mainprobe', '-p', 'rate_hz:=5.0'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    time.sleep(2.0)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=15)
    assert process.returncode == 0, out
    bad = subprocess.run(
        [sys.executable, '-m', 'lekiwi_agent_ros.telemetry.heartbeat', '--ros-args',
         '-p', 'rate_hz:=-1.0'],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert bad.returncode == 2 and 'rate_hz must be > 0' in bad.stderr + bad.stdout
