"""The one-process agent: heartbeat, telemetry, teleop_monitor and fleet_uplink in one executor.

One interpreter and one DDS participant (one rclpy context) for all four nodes. To stay small it
defers numpy, yaml and the rosidl code generator (`msg_types.install_lean_imports()`) before
rclpy is imported, which is why the node modules are imported inside `main()`. It spins an
`EventsExecutor` where rclpy has one (Kilted) with `spin_once(timeout_sec=1.0)`: in rclpy
9.1.2 `EventsExecutor.spin()` busy-loops, a `spin_once` loop does not. Elsewhere (Jazzy) it uses
the `SingleThreadedExecutor`.

    python -m lekiwi_agent_ros.agent --ros-args -p robot_id:=kiwi-001 \
        -p server_url:=ws://fleet:9090/ -p token_file:=/etc/lekiwi/token -p outbox_path:=...
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lekiwi_agent_ros import msg_types
from lekiwi_agent_ros.node_runner import run_nodes


def agent_nodes(boot_id: str | None = None, discovery: bool = False,
                **node_kwargs: Any) -> list[Any]:
    """Build the agent's nodes, sharing one boot id and one resource sampler.

    `node_kwargs` go to every node (tests pass a context, a namespace and parameter overrides).
    With `discovery`, the discovery node too (off unless its `discovery_enabled` parameter).
    """
    import time

    from rclpy.logging import get_logger

    from lekiwi_agent_ros.telemetry.heartbeat import HeartbeatNode
    from lekiwi_agent_ros.telemetry.resource_sampler import ResourceSampler
    from lekiwi_agent_ros.telemetry.telemetry import TelemetryNode
    from lekiwi_agent_ros.uplink.fleet_uplink import FleetUplinkNode

    sampler = ResourceSampler(time.monotonic)
    nodes: list[Any] = []
    try:
        # The first node settles the boot id (given, its boot_id parameter, or a fresh one);
        # the others share it (boot_id.py).
        nodes.append(HeartbeatNode(boot_id=boot_id, sampler=sampler, **node_kwargs))
        boot_id = nodes[0].boot_id
        nodes.append(TelemetryNode(boot_id=boot_id, sampler=sampler, **node_kwargs))
        monitor = teleop_monitor_class()
        if monitor is None:
            get_logger('agent').warning('teleop_monitor is not available: running without it')
        else:
            nodes.append(monitor(boot_id=boot_id, **node_kwargs))
        nodes.append(FleetUplinkNode(boot_id=boot_id, **node_kwargs))
        if discovery:
            from lekiwi_agent_ros.discovery.discovery_node import DiscoveryNode

            nodes.append(DiscoveryNode(**node_kwargs))
    except BaseException:
        for node in reversed(nodes):
            node.destroy_node()
        raise
    return nodes


def teleop_monitor_class() -> Any:
    """Return TeleopMonitorNode, or None when this install lacks it."""
    try:
        from lekiwi_agent_ros.teleop.teleop_monitor import TeleopMonitorNode
    except ImportError:
        return None
    return TeleopMonitorNode


def main(args: Sequence[str] | None = None) -> int:
    """Run the whole agent in this process."""
    deferred = msg_types.install_lean_imports()
    from rclpy.logging import get_logger

    def build() -> list[Any]:
        nodes = agent_nodes(discovery=True)
        get_logger('agent').info(
            f'LeKiwi Fleet agent {_version()} running nodes '
            f'{", ".join(node.get_name() for node in nodes)} in one process; '
            f'deferred imports: {", ".join(deferred) or "none"}'
        )
        return nodes

    return run_nodes(build, args, 'agent')


def _version() -> str:
    import lekiwi_agent_ros

    return lekiwi_agent_ros.__version__


if __name__ == '__main__':
    sys.exit(main())
