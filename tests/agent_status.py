"""Call the agent's fleet_uplink/get_status service once and print the answer as JSON."""

from __future__ import annotations

import json
import sys

import rclpy

from lekiwi_fleet_msgs.srv import GetAgentStatus


def main() -> int:
    rclpy.init()
    node = rclpy.create_node('agent_status_probe')
    client = node.create_client(GetAgentStatus, 'fleet_uplink/get_status')
    try:
        if not client.wait_for_service(timeout_sec=10.0):
            print(json.dumps({'error': 'service not available'}))
            return 1
        future = client.call_async(GetAgentStatus.Request())
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        response = future.result()
        if response is None:
            print(json.dumps({'error': 'no answer'}))
            return 1
        print(json.dumps({'connected': response.connected,
                          'outbox_pending': response.outbox_pending,
                          'acknowledged_total': response.acknowledged_total,
                          'boot_id': response.boot_id}))
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
