"""/diagnostics: the statuses (pure) and the uplink and teleop monitor publishing them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import AgentHarness, agent_harness, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.diagnostics import ERROR, OK, WARN, teleop_statuses, uplink_statuses
from lekiwi_agent_ros.teleop.teleop_detector import TeleopConfig, TeleopDetector
from lekiwi_agent_ros.teleop.teleop_monitor import TeleopMonitorNode
from lekiwi_agent_ros.uplink.fleet_uplink import FleetUplinkNode

ROBOT = 'kiwi-diag'
TOKEN = 'lkw_diag_token'


def test_uplink_statuses_follow_the_connection_and_the_disk() -> None:
    common = dict(server_url='ws://x/', acknowledged_total=3, held=0, max_outbox_messages=100)
    connection, outbox = uplink_statuses('fleet_uplink', ROBOT, connected=True, outbox_pending=2,
                                         storage_problem=None, **common)
    assert (connection.name, connection.level, connection.hardware_id) == (
        'fleet_uplink: connection', OK, ROBOT)
    assert outbox.level == OK and ('pending', '2') in outbox.values
    assert ('transport', 'websocket') in connection.values
    connection, _ = uplink_statuses('fleet_uplink', ROBOT, connected=True, outbox_pending=0,
                                    storage_problem=None, transport='polling', **common)
    assert connection.message == 'connected (polling)' and ('transport', 'polling') in \
        connection.values
    connection, outbox = uplink_statuses('fleet_uplink', ROBOT, connected=False,
                                         outbox_pending=200, storage_problem=None, **common)
    assert connection.level == WARN and outbox.level == WARN
    _, outbox = uplink_statuses('fleet_uplink', ROBOT, connected=True, outbox_pending=2,
                                storage_problem='database or disk is full',
                                **{**common, 'held': 7})
    assert outbox.level == ERROR and 'disk is full' in outbox.message and '7' in outbox.message


def test_teleop_statuses_name_both_answers_and_every_input() -> None:
    detector = TeleopDetector(TeleopConfig(), lambda: 10.0, lambda: 1e9)
    detector.set_operators('zmq', 2)
    detector.observe_round_trip('zmq', 42.5, 0.0)
    reading, _ = detector.update()
    teleop, inputs = teleop_statuses('teleop_monitor', ROBOT, reading, detector.operators,
                                     detector.round_trips())
    assert teleop.name == 'teleop_monitor: teleop'
    assert ('teleop_active', 'false') in teleop.values
    assert ('operator_present', 'true') in teleop.values
    assert ('zmq_operators', '2') in inputs.values
    assert ('control_latency_ms', '42.500') in inputs.values
    assert ('command_rtt_ms[zmq]', '42.500') in inputs.values


@pytest.fixture
def server() -> Iterator[UplinkTestServer]:
    server = UplinkTestServer({ROBOT: TOKEN})
    yield server
    server.close()


@pytest.fixture
def harness() -> Iterator[AgentHarness]:
    with agent_harness() as harness:
        yield harness


def statuses(arrays: list[DiagnosticArray], name: str) -> list[DiagnosticStatus]:
    return [s for a in arrays for s in a.status if s.name == name and s.hardware_id == ROBOT]


def test_the_nodes_publish_on_diagnostics(harness: AgentHarness, server: UplinkTestServer,
                                          tmp_path: Path) -> None:
    arrays = harness.collect(DiagnosticArray, '/diagnostics', 10)
    uplink = harness.add(FleetUplinkNode(**harness.kwargs(
        robot_id=ROBOT, server_url=server.url, token=TOKEN,
        outbox_path=str(tmp_path / 'o.sqlite3'))))
    harness.add(TeleopMonitorNode(namespace=harness.namespace, context=harness.context,
                                  parameter_overrides=[Parameter('robot_id', value=ROBOT)]))
    assert wait_for(lambda: any(s.level == DiagnosticStatus.OK for s in
                                statuses(arrays, f'{uplink.get_name()}: connection')), 10.0)
    assert wait_for(lambda: statuses(arrays, 'teleop_monitor: teleop')
                    and statuses(arrays, 'teleop_monitor: inputs'), 10.0)
    outbox = statuses(arrays, 'fleet_uplink: outbox')[-1]
    assert {kv.key for kv in outbox.values} >= {'pending', 'held_in_memory'}
    assert statuses(arrays, 'teleop_monitor: teleop')[-1].message == 'nobody operating'
