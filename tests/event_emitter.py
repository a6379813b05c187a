"""Publish FleetEvents on fleet/events at a steady rate, numbered in their payload.

Usage: python tests/event_emitter.py ROBOT_ID RATE_HZ [durable]
With `durable` it publishes on the documented contract of fleet/events (reliable,
transient-local, KEEP_LAST 1000): events published while the agent is down still arrive.
Waits for a subscriber, then prints `emitted N at T` every second, so a test knows what was
published when, and `matched total=K ... at T` whenever a subscription matches.
"""

from __future__ import annotations

import json
import sys
import time

import rclpy
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from lekiwi_fleet_msgs.msg import FleetEvent


def main() -> int:
    robot_id, rate = sys.argv[1], float(sys.argv[2])
    durable = sys.argv[3:4] == ['durable']
    rclpy.init()
    node = rclpy.create_node('event_emitter')
    qos = QoSProfile(depth=1000 if durable else 100, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL if durable
                     else DurabilityPolicy.VOLATILE)
    def on_matched(info) -> None:
        # Every new subscription (the agent, or the agent started again) counts in total_count.
        print(f'matched total={info.total_count} current={info.current_count} '
              f'at {time.time():.3f}', flush=True)

    publisher = node.create_publisher(FleetEvent, 'fleet/events', qos,
                                      event_callbacks=PublisherEventCallbacks(matched=on_matched))
    boot = f'emitter{int(time.time())}'
    count = 0

    def emit() -> None:
        nonlocal count
        count += 1
        msg = FleetEvent()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.robot_id, msg.boot_id, msg.sequence = robot_id, boot, count
        msg.severity = FleetEvent.SEVERITY_INFO
        msg.event_type = 'test.tick'
        msg.payload_json = json.dumps({'n': count, 't': time.time()})
        publisher.publish(msg)
        if count % max(int(rate), 1) == 0:
            print(f'emitted {count} at {time.time():.3f}', flush=True)

    try:
        # Emit only once the agent's subscription has matched: earlier messages reach nobody.
        while publisher.get_subscription_count() == 0:
            rclpy.spin_once(node, timeout_sec=0.05)
        print(f'emitter matched at {time.time():.3f}', flush=True)
        node.create_timer(1.0 / rate, emit)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        print(f'emitted {count} at {time.time():.3f} (final)', flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
