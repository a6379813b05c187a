"""Feature flags through the real app, store and gateway: roles, events, delivery, guards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import ADMIN_TOKEN, Api, robot_connection
from fastapi.testclient import TestClient
from live_server import live_server
from websockets.sync.client import ClientConnection, connect

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings

BOOT = '9f2c4e1a7b3d5f60'


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        command_timeout_s=2, flag_tick_s=0.1,
                        flag_guard_cooldown_s=0)
    with TestClient(create_app(settings)) as client:
        services: FleetServices = client.app.state.services  # type: ignore[attr-defined]
        now = time.time()
        _v, viewer_token = create_operator(services.store, 'watcher', 'viewer', now=now)
        _o, operator_token = create_operator(services.store, 'olga', 'operator', now=now)
        api = Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})
        api.operator = {'Authorization': f'Bearer {operator_token}'}  # type: ignore[attr-defined]
        yield api


def transport(**changes: Any) -> dict[str, Any]:
    return {'name': 'uplink_transport', 'kind': 'variant', 'default': 'websocket',
            'variants': ['websocket', 'polling'],
            'rules': [{'value': 'polling', 'tags': ['lab'], 'staged': True}],
            'parameters': ['fleet_uplink:transport'], **changes}


def test_viewers_read_operators_change_admins_delete_and_each_change_is_an_event(
        api: Api) -> None:
    operator = api.operator  # type: ignore[attr-defined]
    assert api.client.post('/api/v1/flags', json=transport(), headers=api.viewer
                           ).status_code == 403
    created = api.client.post('/api/v1/flags', json=transport(), headers=operator)
    assert created.status_code == 201, created.text
    assert created.json()['percentage'] == 5.0 and created.json()['created_by'] == 'olga'
    assert api.client.post('/api/v1/flags', json=transport(), headers=operator
                           ).status_code == 409
    bad = api.client.post('/api/v1/flags', headers=operator,
                          json=transport(name='other', default='carrier-pigeon'))
    assert bad.status_code == 422 and 'variants' in bad.json()['detail']
    listed = api.client.get('/api/v1/flags', headers=api.viewer)
    assert [f['name'] for f in listed.json()] == ['uplink_transport']

    step = api.client.post('/api/v1/flags/uplink_transport/step', headers=api.admin,
                           json={'action': 'advance'})
    assert step.status_code == 200 and step.json()['percentage'] == 25.0
    assert api.client.post('/api/v1/flags/uplink_transport/step', headers=operator,
                           json={'action': 'set', 'percentage': 30}).status_code == 409
    assert api.client.post('/api/v1/flags/uplink_transport/step', headers=operator,
                           json={'action': 'set', 'percentage': 100}).json()['step'] == 3
    assert api.client.post('/api/v1/flags/uplink_transport/step', headers=operator,
                           json={'action': 'advance'}).status_code == 409
    back = api.client.post('/api/v1/flags/uplink_transport/step', headers=operator,
                           json={'action': 'back'})
    assert back.status_code == 200 and back.json()['percentage'] == 50.0
    assert api.client.post('/api/v1/flags/uplink_transport/step', headers=operator,
                           json={'action': 'set'}).status_code == 409  # no percentage
    assert api.client.post('/api/v1/flags/uplink_transport/plan/resume', headers=operator
                           ).status_code == 409  # no plan
    assert api.client.post('/api/v1/flags/ghost/step', headers=operator,
                           json={'action': 'advance'}).status_code == 404
    assert api.client.put('/api/v1/flags/ghost', headers=operator, json={}).status_code == 404
    changed = api.client.put('/api/v1/flags/uplink_transport', headers=operator,
                             json={**transport(), 'name': None, 'default': 'polling'})
    assert changed.status_code == 200 and changed.json()['default'] == 'polling'
    assert api.client.delete('/api/v1/flags/uplink_transport', headers=operator
                             ).status_code == 403
    assert api.client.delete('/api/v1/flags/uplink_transport', headers=api.admin
                             ).status_code == 200
    assert api.client.get('/api/v1/flags/uplink_transport', headers=api.viewer
                          ).status_code == 404
    events = api.client.get('/api/v1/flags/uplink_transport/events', headers=api.viewer).json()
    admin = events[1]['actor']
    assert admin.startswith('bootstrap-admin')
    assert [(e['type'], e['actor']) for e in events] == [
        ('FlagCreated', 'olga'), ('FlagStepAdvanced', admin), ('FlagStepAdvanced', 'olga'),
        ('FlagSteppedBack', 'olga'), ('FlagDefinitionChanged', 'olga'), ('FlagDeleted', admin)]
    assert api.client.get('/api/v1/flags/nope/events', headers=api.viewer).status_code == 404
    assert api.client.get('/api/v1/flags/NOPE', headers=api.viewer).status_code == 422


class Robot:
    """A robot's uplink on a real websocket that answers configure as the agent does."""

    def __init__(self, api: Api, robot_id: str, tags: list[str]) -> None:
        self.robot_id = robot_id
        self.ws: ClientConnection = robot_connection(api, robot_id, api.enrol(robot_id, tags))
        self.seq = 0

    def next_configure(self, timeout: float = 20.0) -> dict[str, Any]:
        """Answer the next configure command as applied; return its payload."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = json.loads(self.ws.recv(timeout=deadline - time.monotonic()))
            if frame.get('op') == 'call_service' and \
                    frame['args']['command_type'] == 'configure':
                payload = json.loads(frame['args']['payload_json'])
                report = {'revision': payload['revision'], 'failed': [],
                          'applied': [{'node': p['node'], 'name': p['name'],
                                       'value': p['value']} for p in payload['parameters']]}
                self.ws.send(json.dumps({
                    'op': 'service_response', 'service': 'fleet/command', 'id': frame['id'],
                    'result': True, 'values': {'accepted': True,
                                               'message': json.dumps(report)}}))
                return payload  # type: ignore[no-any-return]
        raise AssertionError('no configure command arrived')

    def heartbeat(self, state: int) -> None:
        self.seq += 1
        msg = {'header': {'stamp': {'sec': int(time.time()), 'nanosec': 0}, 'frame_id': ''},
               'robot_id': self.robot_id, 'agent_version': '0.1.0', 'software_version': '1',
               'boot_id': BOOT, 'sequence': self.seq, 'state': state, 'teleop_active': False,
               'teleop_score': 0.0,
               'resources': {'cpu_percent': 5.0, 'load_average_1min': 0.1,
                             'memory_used_bytes': 1, 'memory_total_bytes': 2,
                             'disk_used_bytes': 1, 'disk_total_bytes': 2,
                             'temperature_c': 40.0, 'battery_voltage_v': 12.0,
                             'battery_percent': 90.0, 'network_tx_bytes_per_s': 1.0,
                             'network_rx_bytes_per_s': 1.0, 'uptime_s': 10.0}}
        self.ws.send(json.dumps({'op': 'publish', 'topic': 'fleet/heartbeat', 'boot_id': BOOT,
                                 'seq': self.seq, 'msg': msg}))


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError('condition not met in time')


def test_robots_get_their_flags_on_connect_and_change_and_a_guard_turns_the_flag_off(
        api: Api) -> None:
    created = api.client.post('/api/v1/flags', headers=api.admin, json=transport(
        step=3, guards=[{'metric': 'error_rate', 'above': 0.05, 'action': 'off'}]))
    assert created.status_code == 201, created.text
    robot = Robot(api, 'kiwi-1', ['lab'])
    first = robot.next_configure()
    assert first['flags'] == {'uplink_transport': 'polling'}
    assert first['parameters'] == [{'node': 'fleet_uplink', 'name': 'transport',
                                    'value': 'polling', 'flag': 'uplink_transport'}]
    shown = wait_for(lambda: (lambda b: b if b['delivered'] else None)(
        api.client.get('/api/v1/robots/kiwi-1/flags', headers=api.viewer).json()))
    assert shown['delivered']['current'] and shown['delivered']['accepted']
    assert shown['delivered']['applied'][0]['value'] == 'polling'

    robot.heartbeat(state=2)  # idle: error rate 0 over the cohort, nothing trips
    api.client.post('/api/v1/flags', headers=api.admin, json={'name': 'quiet', 'default': True})
    second = robot.next_configure()
    assert second['flags'] == {'quiet': True, 'uplink_transport': 'polling'}
    assert second['revision'] != first['revision']

    robot.heartbeat(state=6)  # error: 100 % of the cohort (over the 5 % threshold)
    third = robot.next_configure()
    assert third['flags']['uplink_transport'] == 'websocket'  # off: the default again
    flag = api.client.get('/api/v1/flags/uplink_transport', headers=api.viewer).json()
    assert flag['step'] == -1 and flag['updated_by'] == 'guard'
    events = api.client.get('/api/v1/flags/uplink_transport/events', headers=api.viewer).json()
    assert events[-1]['type'] == 'FlagGuardTripped' and events[-1]['actor'] == 'guard'
    assert 'error_rate' in events[-1]['summary']
    # ...and the robot's timeline says so, with its own figure (issue 20).
    timeline = wait_for(lambda: [e for e in api.client.get(
        '/api/v1/robots/kiwi-1/events?limit=500', headers=api.viewer).json()['events']
        if e['type'] == 'RobotFlagGuardTripped'])
    assert timeline[-1]['data']['own'] == 1.0 and timeline[-1]['metadata']['actor'] == 'guard'
    metrics = api.client.get('/metrics').text
    assert ('lekiwi_flag_guard_trips_total{action="off",flag="uplink_transport",'
            'metric="error_rate"} 1.0') in metrics
    assert api.client.get('/api/v1/robots/nobody/flags', headers=api.viewer).status_code == 404


def test_a_migration_plan_moves_the_fleet_step_by_step_while_its_gate_holds(api: Api) -> None:
    created = api.client.post('/api/v1/flags', headers=api.admin, json={
        'name': 'agent_uplink', 'default': False,
        'rules': [{'value': True, 'tags': ['lab'], 'staged': True}]})
    assert created.status_code == 201, created.text
    robots = [Robot(api, f'kiwi-{i}', ['lab']) for i in range(3)]
    for robot in robots:
        robot.next_configure()
    planned = api.client.post('/api/v1/flags/agent_uplink/plan', headers=api.admin,
                              json={'soak_s': 0.3, 'min_applied': 1.0})
    assert planned.status_code == 200 and planned.json()['plan']['paused'] is False
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        flag = api.client.get('/api/v1/flags/agent_uplink', headers=api.viewer).json()
        seen.append(flag['percentage'])
        if flag['percentage'] == 100.0:
            break
        for robot in robots:  # each robot applies what it is sent (the gate counts them)
            try:
                robot.next_configure(timeout=0.2)
            except (AssertionError, TimeoutError):
                pass
    assert seen[-1] == 100.0
    assert sorted(set(seen)) == [p for p in (5.0, 25.0, 50.0, 100.0) if p in set(seen)]
    events = api.client.get('/api/v1/flags/agent_uplink/events', headers=api.viewer).json()
    advanced = [e for e in events if e['type'] == 'FlagStepAdvanced']
    assert [e['actor'] for e in advanced] == ['plan'] * 3
    assert all('gate held' in e['summary'] for e in advanced)
    for robot in robots:  # each gets (or got, in the loop above) the flag on
        shown = api.client.get(f'/api/v1/robots/{robot.robot_id}/flags', headers=api.viewer)
        assert shown.json()['flags'] == {'agent_uplink': True}
        if not (shown.json()['delivered'] or {}).get('current'):
            assert robot.next_configure()['flags'] == {'agent_uplink': True}

    assert api.client.post('/api/v1/flags/agent_uplink/plan/pause', headers=api.viewer
                           ).status_code == 403
    paused = api.client.post('/api/v1/flags/agent_uplink/plan/pause', headers=api.admin)
    assert paused.status_code == 200 and paused.json()['plan']['paused'] is True
    assert api.client.post('/api/v1/flags/agent_uplink/plan/pause', headers=api.admin
                           ).status_code == 409
    resumed = api.client.post('/api/v1/flags/agent_uplink/plan/resume', headers=api.admin)
    assert resumed.status_code == 200 and resumed.json()['plan']['paused'] is False
    assert api.client.post('/api/v1/flags/agent_uplink/plan/resume', headers=api.admin
                           ).status_code == 409


def test_a_dashboard_on_the_stream_sees_each_flag_change(tmp_path: Path) -> None:
    settings = Settings(database_url=f'sqlite:///{tmp_path / "fleet.db"}', data_dir=tmp_path,
                        gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN, flag_tick_s=0.1)
    admin = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
    with live_server(settings) as server, \
            connect(server.url.replace('http', 'ws') + '/api/v1/stream', open_timeout=5,
                    additional_headers=admin) as dash:
        assert json.loads(dash.recv(timeout=10))['type'] == 'snapshot'
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.post('/api/v1/flags', headers=admin,
                             json={'name': 'quiet', 'default': True}).status_code == 201
            assert http.post('/api/v1/flags/quiet/step', headers=admin,
                             json={'action': 'advance'}).status_code == 200
        seen = []
        while len(seen) < 2:
            update = json.loads(dash.recv(timeout=10))
            if update['type'] == 'flag':
                seen.append(update)
    assert [(u['flag'], u['event'], u['percentage']) for u in seen] == [
        ('quiet', 'FlagCreated', 5.0), ('quiet', 'FlagStepAdvanced', 25.0)]
    assert all(u['by'].startswith('bootstrap-admin') and not u['deleted'] for u in seen)


def test_on_an_in_memory_database_there_is_no_flag_engine(tmp_path: Path) -> None:
    settings = Settings(database_url='sqlite:///:memory:', data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN)
    with TestClient(create_app(settings)) as client:
        admin = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
        listed = client.get('/api/v1/flags', headers=admin)
        assert listed.status_code == 503 and listed.json()['detail'] == 'no flag engine'
        assert client.post('/api/v1/flags', headers=admin,
                           json={'name': 'quiet', 'default': True}).status_code == 503
