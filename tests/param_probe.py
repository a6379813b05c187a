"""Read one node's parameters once (rcl_interfaces GetParameters) and print them as JSON."""

from __future__ import annotations

import json
import sys

import rclpy
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python


def main() -> int:
    node_name, names = sys.argv[1], sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node('param_probe')
    client = node.create_client(GetParameters, f'{node_name}/get_parameters')
    try:
        if not client.wait_for_service(timeout_sec=20.0):
            print(json.dumps({'error': 'service not available'}))
            return 1
        future = client.call_async(GetParameters.Request(names=names))
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        response = future.result()
        if response is None:
            print(json.dumps({'error': 'no answer'}))
            return 1
        print(json.dumps({n: parameter_value_to_python(v)
                          for n, v in zip(names, response.values, strict=True)}))
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
