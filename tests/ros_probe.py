"""Subscribe to one topic in a process of its own and print each message as a JSON line.

Usage: python tests/ros_probe.py TOPIC PACKAGE/msg/TYPE [--transient-local]
Used by the system tests as the "separate rclpy subscriber process".
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from lekiwi_agent_ros.ros_json import to_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('topic')
    parser.add_argument('type', help='e.g. lekiwi_fleet_msgs/msg/RobotHeartbeat')
    parser.add_argument('--transient-local', action='store_true')
    args = parser.parse_args()
    package, _, name = args.type.split('/')
    cls = getattr(importlib.import_module(f'{package}.msg'), name)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL if args.transient_local
                     else DurabilityPolicy.VOLATILE)
    rclpy.init()
    node = rclpy.create_node('ros_probe')

    def on_message(msg) -> None:
        print(json.dumps(to_json(msg)), flush=True)

    node.create_subscription(cls, args.topic, on_message, qos)
    print('probe ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
