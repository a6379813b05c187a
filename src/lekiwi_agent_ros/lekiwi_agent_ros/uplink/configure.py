"""The `configure` command: the server's evaluated feature flags, applied to nodes' parameters.

The server sends each robot `{"revision", "flags": {name: value}, "parameters": [{"node",
"name", "value", "flag"}]}` (fleet server, domain/flag_delivery.py) when its flags change and
when it connects. `ConfigureApplier` sets each parameter on its node through the node's own
`rcl_interfaces` services (`<node>/get_parameter_types`, then `<node>/set_parameters`), so
the node's own checks (its on-set-parameters callback) decide, in the node's executor thread,
whether a value is acceptable; this works the same for the nodes of the one-process agent and
for nodes of other processes. A value is converted to the parameter's declared type first
(the server's flag values are booleans and strings: a variant "2.5" sets a double to 2.5).

Only the nodes named by the uplink's `configure_nodes` parameter can be configured: the
server decides flags, the robot decides which of its nodes a flag may touch. Their service
clients are made at start (entities made later from the WebSocket thread would race the
executor). What was applied and what failed (and why) goes back in the command's response
(a JSON report as its message) and as a `flags.applied` event on `fleet/events`.

The pure part (`parse_payload`, `coerce`, `Report`) has no ROS import; `ConfigureApplier` is
the shell and waits for the services from the WebSocket thread, with a bounded time, while the
executor thread spins.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# rcl_interfaces/msg/ParameterType values.
NOT_SET, BOOL, INTEGER, DOUBLE, STRING = 0, 1, 2, 3, 4
TYPE_NAMES = {NOT_SET: 'not declared', BOOL: 'bool', INTEGER: 'integer', DOUBLE: 'double',
              STRING: 'string'}
# The one-process agent's nodes. Each named node costs two service clients (four DDS
# endpoints) on the uplink: name others (webrtc_streamer, lekiwi_zmq_bridge, ...) when flags
# should reach them.
DEFAULT_NODES = ('heartbeat', 'telemetry', 'teleop_monitor', 'fleet_uplink')
EVENT_TYPE = 'flags.applied'


class ConfigureError(ValueError):
    """A configure payload that cannot be used at all."""


@dataclass(frozen=True)
class ParameterChange:
    node: str
    name: str
    value: Any
    flag: str


@dataclass
class Report:
    """What a configure command did: its revision, flags, applied and failed parameters."""

    revision: str
    flags: dict[str, Any]
    applied: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def ok(self, change: ParameterChange, value: Any) -> None:
        self.applied.append({'node': change.node, 'name': change.name, 'value': value,
                             'flag': change.flag})

    def fail(self, change: ParameterChange, reason: str) -> None:
        self.failed.append({'node': change.node, 'name': change.name, 'value': change.value,
                            'flag': change.flag, 'reason': reason})

    def as_json(self) -> str:
        return json.dumps({'revision': self.revision, 'flags': self.flags,
                           'applied': self.applied, 'failed': self.failed},
                          separators=(',', ':'))


def parse_payload(payload: Any) -> tuple[str, dict[str, Any], list[ParameterChange]]:
    """Return (revision, flags, changes) of a configure payload; raise ConfigureError."""
    if not isinstance(payload, dict):
        raise ConfigureError('payload must be an object')
    revision, flags, parameters = (payload.get('revision', ''), payload.get('flags', {}),
                                   payload.get('parameters', []))
    if not isinstance(revision, str) or not isinstance(flags, dict) or \
            not isinstance(parameters, list):
        raise ConfigureError('payload needs revision (string), flags (object), '
                             'parameters (array)')
    changes = []
    for item in parameters:
        if not isinstance(item, dict) or not isinstance(item.get('node'), str) or \
                not isinstance(item.get('name'), str) or not item['node'] or not item['name']:
            raise ConfigureError('each parameter needs node and name (strings) and a value')
        changes.append(ParameterChange(item['node'].strip('/'), item['name'], item.get('value'),
                                       str(item.get('flag', ''))))
    return revision, flags, changes


def coerce(value: Any, type_code: int) -> Any:
    """Return `value` as the parameter type `type_code`; raise ValueError when it is not one."""
    if type_code == BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ('true', 'false'):
            return value.lower() == 'true'
    elif type_code == INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return int(value.strip())
    elif type_code == DOUBLE:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            number = math.nan
        if math.isfinite(number):
            return number
    elif type_code == STRING:
        if isinstance(value, bool):
            return 'true' if value else 'false'
        if isinstance(value, str):
            return value
    else:
        raise ValueError(f'parameter is {TYPE_NAMES.get(type_code, f"of type {type_code}")}')
    raise ValueError(f'{value!r} is not a {TYPE_NAMES[type_code]}')


class ConfigureApplier:
    """Apply configure commands on behalf of the uplink node `node`."""

    def __init__(self, node: Any, *, robot_id: str, boot_id: str,
                 timeout_s: float = 3.0, now: Callable[[], float] = time.monotonic) -> None:
        from rcl_interfaces.msg import ParameterDescriptor
        from rcl_interfaces.srv import GetParameterTypes, SetParameters
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        from lekiwi_agent_ros.msg_types import FleetEvent

        self._node = node
        self._robot_id, self._boot_id = robot_id, boot_id
        self._timeout_s = timeout_s
        self._now = now
        self._sequence = 0
        descriptor = ParameterDescriptor(read_only=True, description=(
            'Nodes whose parameters the fleet server may set through feature flags '
            '(the configure command); their names relative to this node\'s namespace.'))
        names = node.declare_parameter('configure_nodes', list(DEFAULT_NODES), descriptor).value
        self._clients: dict[str, tuple[Any, Any]] = {}
        for name in dict.fromkeys(str(n).strip('/') for n in names or ()):
            if name:
                self._clients[name] = (
                    node.create_client(GetParameterTypes, f'{name}/get_parameter_types'),
                    node.create_client(SetParameters, f'{name}/set_parameters'))
        self._types = (GetParameterTypes, SetParameters)
        self._event_type = FleetEvent
        # The durable way of README "Events while the agent is down" (reliable, transient
        # local): both of the uplink's fleet/events subscriptions match it.
        durable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._events = node.create_publisher(FleetEvent, 'fleet/events', durable)

    def handle(self, payload: Any) -> tuple[bool, str]:
        """Apply a configure payload; return (accepted, the JSON report)."""
        try:
            revision, flags, changes = parse_payload(payload)
        except ConfigureError as exc:
            return False, str(exc)
        report = Report(revision, flags)
        deadline = self._now() + self._timeout_s
        by_node: dict[str, list[ParameterChange]] = {}
        for change in changes:
            by_node.setdefault(change.node, []).append(change)
        for node_name, node_changes in by_node.items():
            self._apply(node_name, node_changes, report, deadline)
        self._publish(report)
        return True, report.as_json()

    def _apply(self, node_name: str, changes: Sequence[ParameterChange], report: Report,
               deadline: float) -> None:
        from rclpy.parameter import Parameter

        clients = self._clients.get(node_name)
        if clients is None:
            for change in changes:
                report.fail(change, f'node {node_name} is not in configure_nodes')
            return
        get_types, set_parameters = clients
        if not get_types.service_is_ready() or not set_parameters.service_is_ready():
            for change in changes:
                report.fail(change, f'node {node_name} has no parameter services (not running)')
            return
        types = self._parameter_types(get_types, [c.name for c in changes], deadline)
        if types is None:
            for change in changes:
                report.fail(change, f'node {node_name} did not answer in time')
            return
        accepted: list[tuple[ParameterChange, Any]] = []
        for change, type_code in zip(changes, types, strict=True):
            try:
                accepted.append((change, coerce(change.value, int(type_code))))
            except ValueError as exc:
                report.fail(change, str(exc))
        if not accepted:
            return
        request = self._types[1].Request(parameters=[
            Parameter(c.name, value=v).to_parameter_msg() for c, v in accepted])
        answer = self._call(set_parameters, request, deadline)
        if answer is None:
            for change, _value in accepted:
                report.fail(change, f'node {node_name} did not answer in time')
            return
        for (change, value), result in zip(accepted, answer.results, strict=False):
            if result.successful:
                report.ok(change, value)
            else:
                report.fail(change, result.reason or 'refused by the node')

    def _parameter_types(self, client: Any, names: list[str],
                         deadline: float) -> list[int] | None:
        """Return each parameter's type (NOT_SET when undeclared); None on a timeout."""
        answer = self._call(client, self._types[0].Request(names=names), deadline)
        if answer is None:
            return None
        if len(answer.types) == len(names):
            return [int(t) for t in answer.types]
        # rclpy answers no types at all when one name is not declared: ask one by one.
        types = []
        for name in names:
            one = self._call(client, self._types[0].Request(names=[name]), deadline)
            if one is None:
                return None
            types.append(int(one.types[0]) if one.types else NOT_SET)
        return types

    def _call(self, client: Any, request: Any, deadline: float) -> Any:
        """Call a service and wait (in this, the WebSocket thread) until `deadline`."""
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(max(0.0, deadline - self._now())):
            client.remove_pending_request(future)
            return None
        return future.result()

    def _publish(self, report: Report) -> None:
        self._sequence += 1
        msg = self._event_type()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.robot_id, msg.boot_id, msg.sequence = self._robot_id, self._boot_id, self._sequence
        msg.severity = self._event_type.SEVERITY_WARNING if report.failed else \
            self._event_type.SEVERITY_INFO
        msg.event_type = EVENT_TYPE
        msg.payload_json = report.as_json()
        self._events.publish(msg)
