"""launch_testing test of launch/robot.launch.py, in the form `launch_test` and its pytest
plugin run on a ROS 2 Jazzy or Kilted install: the agent comes up and publishes heartbeats."""

from __future__ import annotations

import os
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip(
    'launch_testing',
    reason='launch_testing is not installable here (no registry has it; its 3.7 pytest plugin '
           'also needs pytest < 9); this test runs on a ROS 2 Jazzy or Kilted install')

import launch  # noqa: E402
import launch.actions  # noqa: E402
import launch.launch_description_sources  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from lekiwi_fleet_msgs.msg import RobotHeartbeat  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'robot.launch.py'


@pytest.mark.launch_test
def generate_test_description():
    """Launch the robot's agent against an unreachable server (heartbeats flow regardless)."""
    robot = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'robot_id': 'kiwi-launch-test', 'server_url': 'ws://127.0.0.1:9/',
                          'token_file': os.devnull, 'webrtc': 'false'}.items())
    return launch.LaunchDescription([robot, launch_testing.actions.ReadyToTest()])


class TestRobotLaunch(unittest.TestCase):
    def test_heartbeats_are_published(self):
        rclpy.init()
        node = rclpy.create_node('launch_test_probe')
        received: list[RobotHeartbeat] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(RobotHeartbeat, 'fleet/heartbeat', received.append, qos)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(received) < 2:
                rclpy.spin_once(node, timeout_sec=0.2)
        finally:
            node.destroy_node()
            rclpy.shutdown()
        self.assertGreaterEqual(len(received), 2)
        self.assertEqual(received[-1].robot_id, 'kiwi-launch-test')


@launch_testing.post_shutdown_test()
class TestRobotShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
