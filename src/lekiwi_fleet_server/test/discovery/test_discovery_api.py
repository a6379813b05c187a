"""REST, CLI and stream of discovery against the real app, on the machine's loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from discovery_app import ADMIN, enrol, inventory, robot_socket, wait_for
from fastapi.testclient import TestClient
from standins import AgentStatusStandIn, LoopThread, agent_status

from lekiwi_fleet_server.cli import main as cli_main


def test_uplink_robots_appear_at_once_and_go_offline_on_disconnect(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    token = enrol(client, 'kiwi-up')
    port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
    ws = robot_socket(port, 'kiwi-up', token)
    entry = wait_for(lambda: inventory(client).get('kiwi-up'))
    assert entry['status'] == 'enrolled' and list(entry['sources']) == ['uplink']
    assert entry['address'] == '127.0.0.1'
    assert entry['presence']['state'] == 'online'
    assert set(inventory(client, source='uplink', enrolled=True, state='online')) == {'kiwi-up'}
    assert inventory(client, source='mdns') == {} and inventory(client, enrolled=False) == {}
    ws.close()
    wait_for(lambda: 'kiwi-up' not in inventory(client))
    changes = client.get('/api/v1/inventory/presence', headers=ADMIN).json()
    assert [(c['robot_id'], c['state'], c['reason']) for c in changes] == [
        ('kiwi-up', 'online', 'connected'), ('kiwi-up', 'offline', 'disconnected')]


def test_a_scan_over_rest_finds_an_agent_lists_it_discovered_and_enrols_it(
        make_client: Callable[..., TestClient]) -> None:
    with LoopThread() as loop:
        standin = loop.call(AgentStatusStandIn('127.0.0.1', 0, json.dumps(
            agent_status('kiwi-scan', enrolled=False)).encode()).start())
        port = standin._server.sockets[0].getsockname()[1]  # port 0: read the real one
        client = make_client(discovery_agent_port=port, discovery_rosbridge_port=port,
                             discovery_probe_timeout_s=0.5)
        viewer_refused = client.post('/api/v1/inventory/scans', json={'targets': ['127.0.0.1']})
        assert viewer_refused.status_code == 401
        bad = client.post('/api/v1/inventory/scans', headers=ADMIN, json={'targets': ['x']})
        assert bad.status_code == 422 and 'not an IP address' in bad.json()['detail']
        started = client.post('/api/v1/inventory/scans', headers=ADMIN,
                              json={'targets': ['127.0.0.1/32']})
        assert started.status_code == 202
        job = started.json()
        assert job['state'] in ('running', 'done') and job['probes'] == 2
        done = wait_for(lambda: (j := client.get(f'/api/v1/inventory/scans/{job["id"]}',
                                                 headers=ADMIN).json())['state'] == 'done'
                        and j)
        assert done['probed'] == 2 and done['found'] == ['kiwi-scan']
        assert [s['id'] for s in client.get('/api/v1/inventory/scans',
                                            headers=ADMIN).json()] == [job['id']]
        assert client.get('/api/v1/inventory/scans/ffffffffffff', headers=ADMIN).status_code == 404
        assert client.get('/api/v1/inventory/scans/nope', headers=ADMIN).status_code == 422
        entry = inventory(client)['kiwi-scan']
        assert entry['status'] == 'discovered' and entry['presence'] is None
        assert entry['sources']['scan']['port'] == port and entry['agent_version'] == '0.1.0'
        assert set(inventory(client, enrolled=False, state='unknown')) == {'kiwi-scan'}
        # Enrol from the inventory: the token is shown once, the entry is enrolled.
        assert client.post('/api/v1/inventory/ghost/enrol', headers=ADMIN,
                           json={}).status_code == 404
        enrolled = client.post('/api/v1/inventory/kiwi-scan/enrol', headers=ADMIN,
                               json={'tags': ['lab']})
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()['token'].startswith('lkw_')
        assert enrolled.json()['entry']['status'] == 'enrolled'
        assert client.post('/api/v1/inventory/kiwi-scan/enrol', headers=ADMIN,
                           json={}).status_code == 409
        loop.call(standin.stop())


def test_the_stream_carries_inventory_changes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    token = enrol(client, 'kiwi-stream')
    port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
    with client.websocket_connect('/api/v1/stream?inventory=true', headers=ADMIN) as stream:
        assert json.loads(stream.receive_text())['type'] == 'snapshot'
        assert json.loads(stream.receive_text()) == {
            'type': 'inventory_snapshot', 'at': pytest.approx(time.time(), abs=60),
            'entries': []}
        ws = robot_socket(port, 'kiwi-stream', token)
        for _ in range(20):
            update = json.loads(stream.receive_text())
            if update['type'] == 'inventory':
                break
        assert update['entries'][0]['key'] == 'kiwi-stream'
        assert update['entries'][0]['entry']['sources']['uplink']
        assert update['presence'][0]['state'] == 'online'
        ws.close()
    # Without asking, a dashboard gets no inventory messages.
    with client.websocket_connect('/api/v1/stream', headers=ADMIN) as plain:
        assert json.loads(plain.receive_text())['type'] == 'snapshot'
        ws = robot_socket(port, 'kiwi-stream', token)
        time.sleep(1.0)
        ws.close()
    assert client.app.state.services.discovery.bus.subscriber_count() == 0  # type: ignore


def test_cli_discover_prints_a_table_and_json(capsys: Any) -> None:
    with LoopThread() as loop:
        standin = loop.call(AgentStatusStandIn('127.0.0.1', 0, json.dumps(
            agent_status('kiwi-cli')).encode()).start())
        port = standin._server.sockets[0].getsockname()[1]
        args = ['discover', '127.0.0.1', '--agent-port', str(port), '--rosbridge-port',
                str(port), '--timeout', '0.5']
        assert cli_main(args) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == ['ROBOT', 'ADDRESS', 'FOUND', 'BY', 'PORTS', 'AGENT',
                                    'SOFTWARE']
        assert table[1].split()[:3] == ['kiwi-cli', '127.0.0.1', 'scan']
        assert table[-1].startswith('1 found; 2 probes of 1 addresses')
        assert cli_main([*args, '--json']) == 0
        out = json.loads(capsys.readouterr().out)
        assert [e['robot_id'] for e in out['entries']] == ['kiwi-cli'] and out['probes'] == 2
        assert cli_main(['discover', '10.0.0.0/8']) == 2
        assert 'at most' in capsys.readouterr().err
        loop.call(standin.stop())


def test_scheduled_scans_fill_the_inventory_without_asking(
        make_client: Callable[..., TestClient]) -> None:
    with LoopThread() as loop:
        standin = loop.call(AgentStatusStandIn('127.0.0.1', 0, json.dumps(
            agent_status('kiwi-sched')).encode()).start())
        port = standin._server.sockets[0].getsockname()[1]
        client = make_client(discovery_targets=['127.0.0.1/32'], discovery_scan_interval_s=0.3,
                             discovery_agent_port=port, discovery_rosbridge_port=port,
                             discovery_probe_timeout_s=0.5)
        entry = wait_for(lambda: inventory(client).get('kiwi-sched'))
        assert entry['sources']['scan']['address'] == '127.0.0.1'
        wait_for(lambda: len(client.get('/api/v1/inventory/scans', headers=ADMIN).json()) >= 2)
        loop.call(standin.stop())


def test_a_flapping_uplink_robot_is_reported_once_not_per_reconnect(
        make_client: Callable[..., TestClient], database_url: str) -> None:
    client = make_client(presence_flap_threshold=4, presence_flap_window_s=60.0,
                         database_url=database_url)
    token = enrol(client, 'kiwi-flap')
    port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
    for _ in range(8):  # eight connect/disconnect cycles, each seen by a refresh
        ws = robot_socket(port, 'kiwi-flap', token)
        wait_for(lambda: (e := inventory(client).get('kiwi-flap')) and e['presence']
                 and e['presence']['state'] in ('online', 'flapping'))
        ws.close()
        wait_for(lambda: 'kiwi-flap' not in inventory(client))
    changes = [c for c in client.get('/api/v1/inventory/presence', headers=ADMIN).json()
               if c['robot_id'] == 'kiwi-flap']
    states = [c['state'] for c in changes]
    # First online, then three changes reported, then one flapping report for the rest.
    assert states == ['online', 'offline', 'online', 'offline', 'flapping'], states
    assert changes[-1]['changes_in_window'] == 4
    # The flap is one event on the robot's stream, not one per reconnect.
    events = wait_for(lambda: [e for e in client.get(
        '/api/v1/robots/kiwi-flap/events', headers=ADMIN, params={'limit': 500}).json()['events']
        if e['type'] == 'RobotFlapped'])
    assert len(events) == 1 and events[0]['data']['changes_in_window'] == 4
    assert events[0]['metadata']['causation'] == 'discovery:presence'
    timeline = client.get('/api/v1/timeline', headers=ADMIN,
                          params={'robot_id': 'kiwi-flap', 'limit': 500}).json()['entries']
    assert [e['severity'] for e in timeline if e['type'] == 'RobotFlapped'] == ['warning']


def _raw_robot(port: int, robot_id: str, token: str) -> Any:
    """Open a robot connection on a bare socket that never answers the gateway's pings."""
    import base64
    import os
    import socket

    sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f'GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n'
                  f'Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n'
                  'Sec-WebSocket-Version: 13\r\n\r\n').encode())
    answer = b''
    while b'\r\n\r\n' not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b'HTTP/1.1 101'), answer
    sock.sendall(_client_frame(0x1, json.dumps({
        'op': 'auth', 'robot_id': robot_id, 'token': token,
        'protocol': ['lekiwi-fleet/1']}).encode()))
    return sock


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = b'\x01\x02\x03\x04'
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        assert len(payload) < 65536
        length = bytes([0x80 | 126]) + len(payload).to_bytes(2, 'big')
    return bytes([0x80 | opcode]) + length + mask + masked


def test_a_silent_robot_goes_stale_and_back_and_each_is_an_event(
        make_client: Callable[..., TestClient], database_url: str) -> None:
    client = make_client(presence_stale_s=1.0, presence_timeout_s=8.0,
                         database_url=database_url)
    token = enrol(client, 'kiwi-quiet')
    port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
    sock = _raw_robot(port, 'kiwi-quiet', token)
    try:
        def state() -> str | None:
            entry = inventory(client).get('kiwi-quiet')
            return entry['presence']['state'] if entry and entry['presence'] else None

        wait_for(lambda: state() == 'stale')  # it answers no ping: silent past 1 s
        sock.sendall(_client_frame(0xA, b''))  # a pong: heard again
        wait_for(lambda: state() == 'online')

        def recorded() -> list[tuple[str, str]]:
            events = client.get('/api/v1/robots/kiwi-quiet/events', headers=ADMIN,
                                params={'limit': 100}).json()['events']
            return [(e['type'], e['data'].get('reason', '')) for e in events
                    if e['type'] in ('RobotWentStale', 'RobotStaleEnded')]

        assert wait_for(lambda: len(recorded()) == 2 and recorded()) == [
            ('RobotWentStale', 'silent'), ('RobotStaleEnded', 'connected')]
    finally:
        sock.close()
