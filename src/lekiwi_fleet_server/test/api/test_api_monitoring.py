"""What monitoring sees: a robot going offline on the dashboard stream within 1 s of its
detection, and the fleet, writer, stream and disk metrics on /metrics."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import time
from pathlib import Path
from typing import Any

from api_harness import ADMIN_TOKEN, Api, event_frame, robot_connection

from lekiwi_fleet_server.api.routes.stream import update_age


def _sample(text: str, name: str, labels: str = '') -> float:
    match = re.search(rf'^{re.escape(name + labels)} (\S+)$', text, re.MULTILINE)
    assert match, f'{name}{labels} not in /metrics'
    return float(match.group(1))


def test_robot_offline_reaches_the_dashboard_within_a_second(api: Api) -> None:
    token = api.enrol('kiwi-mon')
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
        assert json.loads(dash.receive_text())['type'] == 'snapshot'
        ws = robot_connection(api, 'kiwi-mon', token)
        ws.send(json.dumps(event_frame(1, 'kiwi-mon')))
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 10
        while status.get('status') != 'online':
            assert time.monotonic() < deadline, 'never online'
            for row in json.loads(dash.receive_text())['robots']:
                status.update(row)
        metrics = api.client.get('/metrics').text
        assert _sample(metrics, 'lekiwi_robot_online', '{robot_id="kiwi-mon"}') == 1
        assert _sample(metrics, 'lekiwi_robots', '{status="online"}') == 1
        # The gateway detects a closed socket at once: from the close to the dashboard's row.
        ws.close()
        closed = time.monotonic()
        while status.get('status') != 'offline':
            assert time.monotonic() - closed < 5, 'never offline'
            for row in json.loads(dash.receive_text())['robots']:
                if row['robot_id'] == 'kiwi-mon':
                    status.update(row)
        elapsed = time.monotonic() - closed
    assert elapsed < 1.0, f'offline shown {elapsed:.3f} s after the robot went away'
    metrics = api.client.get('/metrics').text
    assert _sample(metrics, 'lekiwi_robot_online', '{robot_id="kiwi-mon"}') == 0
    assert _sample(metrics, 'lekiwi_robots', '{status="offline"}') == 1
    assert _sample(metrics, 'lekiwi_fleet_state_up') == 1
    assert _sample(metrics, 'lekiwi_stream_lag_seconds_count') >= 2
    assert _sample(metrics, 'lekiwi_writer_batches_total', '{shard="0"}') >= 2
    assert _sample(metrics, 'lekiwi_writer_events_total',
                   '{shard="0",type="RobotWentOffline"}') == 1
    assert _sample(metrics, 'lekiwi_filesystem_avail_bytes', '{volume="data_dir"}') > 0


def test_update_age_reads_the_batch_time() -> None:
    assert update_age('{"type":"update","at":100.25,"robots":[]}', 101.0) == 0.75
    assert update_age('{"type":"update","at":1.7e9,"robots":[]}', 1.7e9 + 2) == 2.0
    assert update_age('{"type":"snapshot"}', 5.0) is None


def test_fleet_collector_counts_robots_and_survives_a_store_outage(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from lekiwi_fleet_server.fleet_collector import FleetStateCollector
    from lekiwi_fleet_server.settings import Settings
    from lekiwi_fleet_server.store.interface import RobotSummary, StoreUnavailable

    robots = [RobotSummary('a', (), 'online', 0.0, False, last_heartbeat_at=99.0,
                           state='teleop', teleop_active=True,
                           resources={'battery_percent': 42.5, 'cpu_percent': None}),
              RobotSummary('b', (), 'stale', 0.0, False, state='idle'),
              RobotSummary('c', (), 'offline', 0.0, False),
              RobotSummary('new', (), 'never_seen', 0.0, False),
              RobotSummary('gone', (), 'offline', 0.0, True)]

    class Store:
        down = False

        def list_robots(self, _filter: object, *, now: float) -> list[RobotSummary]:
            if self.down:
                raise StoreUnavailable('database is down')
            return robots

        def undelivered_messages(self) -> dict[str, int]:
            if self.down:
                raise StoreUnavailable('database is down')
            return {'a': 7, 'gone': 3}

    (tmp_path / 'fleet.db').write_bytes(b'x' * 10)
    store = Store()
    registry = CollectorRegistry()
    registry.register(FleetStateCollector(Settings(data_dir=tmp_path), store,  # type: ignore
                                          lambda: 100.0))
    value = registry.get_sample_value
    assert value('lekiwi_robots', {'status': 'online'}) == 1
    assert value('lekiwi_robots', {'status': 'offline'}) == 1  # the revoked one not counted
    assert value('lekiwi_robots_by_state', {'state': 'teleop'}) == 1
    assert value('lekiwi_teleop_active_robots') == 1
    assert value('lekiwi_robot_online', {'robot_id': 'b'}) == 1
    assert value('lekiwi_robot_online', {'robot_id': 'c'}) == 0
    assert value('lekiwi_robot_online', {'robot_id': 'new'}) is None
    assert value('lekiwi_robots', {'status': 'never_seen'}) == 1
    assert value('lekiwi_robot_last_heartbeat_timestamp_seconds', {'robot_id': 'a'}) == 99.0
    assert value('lekiwi_database_file_bytes') == 10
    assert value('lekiwi_robot_battery_percent', {'robot_id': 'a'}) == 42.5
    assert value('lekiwi_robot_cpu_percent', {'robot_id': 'a'}) is None
    assert value('lekiwi_robot_undelivered_messages', {'robot_id': 'a'}) == 7
    assert value('lekiwi_robot_undelivered_messages', {'robot_id': 'gone'}) is None  # revoked
    assert value('lekiwi_filesystem_avail_bytes', {'volume': 'blob_dir'}) > 0  # not made yet
    store.down = True
    assert value('lekiwi_fleet_state_up') == 0 and value('lekiwi_robots') is None
    assert value('lekiwi_filesystem_size_bytes', {'volume': 'data_dir'}) > 0


def _silent_robot(port: int, robot_id: str, token: str) -> socket.socket:
    """Connect and authenticate on a raw socket that then never answers a ping."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f'GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n'
                  f'Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n'
                  'Sec-WebSocket-Version: 13\r\n\r\n').encode())
    head = b''
    while b'\r\n\r\n' not in head:
        head += sock.recv(1)
    assert b' 101 ' in head.split(b'\r\n', 1)[0], head
    payload = json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                          'protocol': ['lekiwi-fleet/1']}).encode()
    mask = os.urandom(4)
    assert len(payload) < 65536
    sock.sendall(bytes([0x81, 0x80 | 126]) + struct.pack('!H', len(payload)) + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    first = sock.recv(2)
    answer = sock.recv(first[1] & 0x7F)
    assert b'authenticated' in answer, answer
    return sock


def test_silent_robot_offline_reaches_the_dashboard_within_a_second_of_detection(
        tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lekiwi_fleet_server.app import create_app
    from lekiwi_fleet_server.settings import Settings

    timeout_s = 0.5
    settings = Settings(data_dir=tmp_path, gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN,
                        commit_interval_ms=20, ping_interval_s=0.2,
                        presence_timeout_s=timeout_s, presence_stale_s=timeout_s / 2,
                        log_level='warning')  # discovery needs stale before offline
    with TestClient(create_app(settings)) as client:
        admin = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
        token = client.post('/api/v1/robots', headers=admin,
                            json={'robot_id': 'kiwi-quiet', 'tags': []}).json()['token']
        port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
        with client.websocket_connect('/api/v1/stream') as dash:
            dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
            assert json.loads(dash.receive_text())['type'] == 'snapshot'
            robot = _silent_robot(port, 'kiwi-quiet', token)
            heard = time.monotonic()  # the last the gateway hears of it: its auth frame
            status: dict[str, Any] = {}
            while status.get('status') != 'offline':
                assert time.monotonic() - heard < 10, 'never offline'
                for row in json.loads(dash.receive_text())['robots']:
                    if row['robot_id'] == 'kiwi-quiet':
                        status.update(row)
            shown = time.monotonic()
            robot.close()
        # Detected silent once presence_timeout_s has passed without a frame or a pong.
        assert status['status'] == 'offline'
        assert shown - heard >= timeout_s * 0.9
        assert shown - (heard + timeout_s) < 1.0, f'{shown - heard - timeout_s:.3f} s late'
        robots = client.get('/api/v1/robots/kiwi-quiet', headers=admin).json()
        assert robots['status'] == 'offline'
