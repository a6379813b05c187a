"""The configure command: flags parsed and coerced (pure), applied to real nodes' parameters."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import AgentHarness, agent_harness, wait_for
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from uplink_server import UplinkTestServer

from lekiwi_agent_ros.msg_types import FleetEvent
from lekiwi_agent_ros.telemetry.heartbeat import HISTORY_QOS
from lekiwi_agent_ros.uplink.configure import (
    BOOL,
    DOUBLE,
    INTEGER,
    NOT_SET,
    STRING,
    ConfigureError,
    coerce,
    parse_payload,
)
from lekiwi_agent_ros.uplink.fleet_uplink import FleetUplinkNode

ROBOT = 'kiwi-cfg'
TOKEN = 'lkw_configure_token'


def test_a_payload_parses_into_changes_and_bad_ones_are_refused() -> None:
    revision, flags, changes = parse_payload({
        'revision': 'r1', 'flags': {'f': 'polling'},
        'parameters': [{'node': '/fleet_uplink', 'name': 'transport', 'value': 'polling',
                        'flag': 'f'}]})
    assert revision == 'r1' and flags == {'f': 'polling'}
    assert [(c.node, c.name, c.value, c.flag) for c in changes] == [
        ('fleet_uplink', 'transport', 'polling', 'f')]
    for bad in ([], {'flags': []}, {'parameters': [{'node': 'x'}]},
                {'parameters': [{'node': '', 'name': 'p'}]}):
        with pytest.raises(ConfigureError):
            parse_payload(bad)


@pytest.mark.parametrize(('value', 'type_code', 'expected'), [
    (True, BOOL, True), ('false', BOOL, False), ('2', INTEGER, 2), (3, INTEGER, 3),
    ('2.5', DOUBLE, 2.5), (1, DOUBLE, 1.0), (True, STRING, 'true'), ('ws', STRING, 'ws')])
def test_values_become_the_parameters_type(value: Any, type_code: int, expected: Any) -> None:
    result = coerce(value, type_code)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(('value', 'type_code'), [
    ('yes', BOOL), (True, INTEGER), ('2.5', INTEGER), ('nan', DOUBLE), (math.inf, DOUBLE),
    (True, DOUBLE), (2, STRING), ('x', NOT_SET)])
def test_values_that_do_not_fit_are_refused(value: Any, type_code: int) -> None:
    with pytest.raises(ValueError):
        coerce(value, type_code)


class FlagTarget(Node):
    """A node with parameters a flag may set; it refuses a non-positive period itself."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('flag_target', **kwargs)
        self.declare_parameter('period_s', 1.0)
        self.declare_parameter('transport', 'websocket')
        self.declare_parameter('enabled', False)
        self.add_on_set_parameters_callback(self._check)

    def _check(self, params: list[Any]) -> SetParametersResult:
        for param in params:
            if param.name == 'period_s' and param.value <= 0:
                return SetParametersResult(successful=False, reason='period_s must be > 0')
        return SetParametersResult(successful=True)


@pytest.fixture
def server() -> Iterator[UplinkTestServer]:
    server = UplinkTestServer({ROBOT: TOKEN})
    yield server
    server.close()


@pytest.fixture
def harness() -> Iterator[AgentHarness]:
    with agent_harness() as harness:
        yield harness


def test_configure_sets_the_named_nodes_parameters_and_reports_what_it_applied(
        harness: AgentHarness, server: UplinkTestServer, tmp_path: Path) -> None:
    target = harness.add(FlagTarget(**harness.kwargs()))
    events = harness.collect(FleetEvent, 'fleet/events', HISTORY_QOS)
    token_file = tmp_path / 'token'
    token_file.write_text(TOKEN + '\n')
    uplink = FleetUplinkNode(**harness.kwargs(
        robot_id=ROBOT, server_url=server.url, token_file=str(token_file),
        outbox_path=str(tmp_path / 'outbox.sqlite3'), backoff_base_s=0.05, backoff_cap_s=0.2,
        configure_nodes=['flag_target', 'fleet_uplink']))
    harness.add(uplink)
    assert wait_for(lambda: server.connected(ROBOT))
    payload = {'revision': 'rev-1', 'flags': {'uplink_transport': 'polling', 'slow': '2.5'},
               'parameters': [
                   {'node': 'flag_target', 'name': 'transport', 'value': 'polling',
                    'flag': 'uplink_transport'},
                   {'node': 'flag_target', 'name': 'period_s', 'value': '2.5', 'flag': 'slow'},
                   {'node': 'flag_target', 'name': 'enabled', 'value': 'polling', 'flag': 'x'},
                   {'node': 'flag_target', 'name': 'undeclared', 'value': True, 'flag': 'y'},
                   {'node': 'camera_driver', 'name': 'fps', 'value': '5', 'flag': 'z'}]}

    reports: list[dict[str, Any]] = []

    def answered() -> bool:
        response = server.call_command(ROBOT, 'configure', payload)
        assert response['result'] is True, response
        reports.append(json.loads(response['values']['message']))
        # The parameter services of a node just made may take a moment to be matched.
        return not any('not running' in f['reason'] for f in reports[-1]['failed'])

    assert wait_for(answered, timeout=30)
    report = reports[-1]
    assert report['revision'] == 'rev-1', report
    assert {(a['name'], a['value']) for a in report['applied']} == {
        ('transport', 'polling'), ('period_s', 2.5)}, report
    reasons = {f['name']: f['reason'] for f in report['failed']}
    assert set(reasons) == {'enabled', 'undeclared', 'fps'}
    assert 'not a bool' in reasons['enabled'] and 'not declared' in reasons['undeclared']
    assert 'not in configure_nodes' in reasons['fps']
    assert target.get_parameter('transport').value == 'polling'
    assert target.get_parameter('period_s').value == 2.5

    refused = server.call_command(ROBOT, 'configure', {
        'revision': 'rev-2', 'flags': {},
        'parameters': [{'node': 'flag_target', 'name': 'period_s', 'value': '0', 'flag': 's'}]})
    second = json.loads(refused['values']['message'])
    assert second['applied'] == [] and 'must be > 0' in second['failed'][0]['reason']
    assert target.get_parameter('period_s').value == 2.5  # the node's own check decided

    def applied() -> list[FleetEvent]:
        return [e for e in events if e.event_type == 'flags.applied'
                and json.loads(e.payload_json)['revision'] == 'rev-2']

    assert wait_for(lambda: applied())
    applied = applied()
    assert applied[0].robot_id == ROBOT and applied[0].severity == FleetEvent.SEVERITY_WARNING
    bad = server.call_command(ROBOT, 'configure', {'flags': 'nope'})
    assert bad['result'] is False and 'payload needs' in bad['values']['message']
