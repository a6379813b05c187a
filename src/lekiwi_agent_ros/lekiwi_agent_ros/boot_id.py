"""The agent's boot id: one per start of the agent, shared by all its nodes (one process or many).

Every node stamps it on what it sends (heartbeats, telemetry, events) and the uplink frames its
messages under it (docs/robot-protocol.md: `(boot_id, seq)`), so the nodes of one agent must
agree on it. In the one-process agent `agent_nodes()` draws one and hands it to each node. With
`one_process:=false` the nodes are processes of their own: the launch file draws one per
`ros2 launch` and passes it to every node as the parameter `boot_id` (a node started on its own
with no such parameter draws its own, as before). A process that launch respawns keeps the
launch's boot id: the outbox continues its sequence within a boot it already knows (it keeps
a high-water mark per boot), so nothing is numbered twice.
"""

from __future__ import annotations

import re
import secrets

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

BOOT_ID_PARAMETER = 'boot_id'
_PATTERN = re.compile(r'[A-Za-z0-9-]{8,64}')  # what the robot protocol accepts


def new_boot_id() -> str:
    """Draw a fresh boot id (64 random bits in hex)."""
    return secrets.token_hex(8)


def resolve_boot_id(node: Node, given: str | None) -> str:
    """Return `given`, else the node's `boot_id` parameter, else a fresh one.

    Declares the read-only parameter (so `ros2 param get <node> boot_id` shows the id in use);
    raises ValueError for a value the protocol would refuse.
    """
    if node.has_parameter(BOOT_ID_PARAMETER):
        configured = str(node.get_parameter(BOOT_ID_PARAMETER).value)
    else:
        configured = str(node.declare_parameter(BOOT_ID_PARAMETER, '', ParameterDescriptor(
            description="The agent's boot id, shared by its nodes (the launch file passes one "
                        'to every process); empty: draw one.', read_only=True)).value)
    boot_id = given or configured or new_boot_id()
    if not _PATTERN.fullmatch(boot_id):
        raise ValueError(f'boot_id must be 8 to 64 characters of [A-Za-z0-9-], got {boot_id!r}')
    if given and configured and configured != given:
        node.get_logger().warning(f'boot_id parameter {configured!r} ignored: this process '
                                  f'shares boot id {given!r} among its nodes')
    return boot_id
