"""The split server (the store's writer in its own process) through the real app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN, BOOT, Api, event_frame, robot_connection
from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.app import create_app, uses_writer_process
from lekiwi_fleet_server.domain.shards import shard_of
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.split_store import SplitStore


@pytest.fixture
def split_api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        writer_process=True, log_level='warning')
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _viewer, viewer_token = create_operator(services.store, 'watcher', 'viewer',
                                                now=time.time())
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})


def test_ingest_admin_writes_and_reads_through_the_writer_process(split_api: Api) -> None:
    api = split_api
    assert isinstance(api.services.store, SplitStore)
    token = api.enrol('kiwi-split')
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
        assert json.loads(dash.receive_text())['type'] == 'snapshot'
        ws = robot_connection(api, 'kiwi-split', token)
        for seq in (1, 2, 3):
            ws.send(json.dumps(event_frame(seq, 'kiwi-split')))
        acked: set[int] = set()
        while acked != {1, 2, 3}:
            reply = json.loads(ws.recv(timeout=5))
            if reply.get('topic') == 'fleet/ack':
                acked.update(s for a, b in reply['msg']['ranges'] for s in range(a, b + 1))
        seen = 0
        while seen != 3:
            for row in json.loads(dash.receive_text())['robots']:
                # A row after the snapshot is a delta: last_seq only when it changed.
                seen = row.get('last_seq', seen) if row['robot_id'] == 'kiwi-split' else seen
    boots = api.client.get('/api/v1/robots/kiwi-split/sequences', headers=api.viewer).json()
    assert boots['boots'][0]['boot_id'] == BOOT and boots['boots'][0]['ranges'] == [[1, 3]]
    assert api.client.get('/readyz').json() == {'status': 'ready'}
    # Revoking is a write: the writer process does it, the gateway drops the robot.
    assert api.client.post('/api/v1/robots/kiwi-split/revoke',
                           headers=api.admin).status_code == 204
    deadline = time.monotonic() + 5
    while api.services.gateway.is_connected('kiwi-split'):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert api.services.store.robot_credentials('kiwi-split').revoked  # type: ignore[union-attr]
    ws.close()


@pytest.fixture
def sharded_api(pg_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=pg_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        writer_shards=2, log_level='warning')
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'}, {})


def acked_seqs(ws: ClientConnection, wanted: set[int]) -> set[int]:
    acked: set[int] = set()
    while not wanted <= acked:
        reply = json.loads(ws.recv(timeout=5))
        if reply.get('topic') == 'fleet/ack':
            acked.update(s for a, b in reply['msg']['ranges'] for s in range(a, b + 1))
    return acked


def test_two_writer_shards_serve_one_fleet(sharded_api: Api) -> None:
    api = sharded_api
    robots = ['kiwi-d', 'kiwi-split']  # shard 0 and shard 1 of two
    assert [shard_of(r, 2) for r in robots] == [0, 1]
    writers = api.services.gateway.batchers
    assert len(writers) == 2
    tokens = {r: api.enrol(r) for r in robots}
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
        assert json.loads(dash.receive_text())['type'] == 'snapshot'
        sockets = {r: robot_connection(api, r, tokens[r]) for r in robots}
        for seq in (1, 2, 3):
            for r, ws in sockets.items():
                ws.send(json.dumps(event_frame(seq, r)))
        for ws in sockets.values():
            assert acked_seqs(ws, {1, 2, 3}) == {1, 2, 3}
        seen = dict.fromkeys(robots, 0)
        while set(seen.values()) != {3}:
            for row in json.loads(dash.receive_text())['robots']:
                if row['robot_id'] in seen:
                    seen[row['robot_id']] = row.get('last_seq', seen[row['robot_id']]) or 0
    # Each shard's writer committed its own robot's batches.
    assert all(b.committed_batches > 0 for b in writers)
    metrics = api.client.get('/metrics').text
    assert all(f'lekiwi_writer_requests_pending{{shard="{i}"}}' in metrics for i in (0, 1))
    listed = api.client.get('/api/v1/robots', headers=api.admin).json()
    assert {r['robot_id']: r['status'] for r in listed} == dict.fromkeys(robots, 'online')
    for ws in sockets.values():
        ws.close()
    deadline = time.monotonic() + 5
    while {r['status'] for r in api.client.get('/api/v1/robots',
                                                headers=api.admin).json()} != {'offline'}:
        assert time.monotonic() < deadline, 'closed robots never went offline'
        time.sleep(0.05)


def test_only_shareable_databases_get_a_writer_process(tmp_path: Path) -> None:
    assert uses_writer_process(Settings(data_dir=tmp_path))
    assert not uses_writer_process(Settings(database_url='sqlite://', data_dir=tmp_path))
    assert not uses_writer_process(Settings(database_url='sqlite:///:memory:',
                                            data_dir=tmp_path))
    assert not uses_writer_process(Settings(data_dir=tmp_path, writer_process=False))
    # SQLite locks the whole database to write: one writer, whatever was asked.
    assert Settings(data_dir=tmp_path, writer_shards=2).resolved_writer_shards == 1
    assert Settings(database_url='postgresql+psycopg://h/db', data_dir=tmp_path,
                    writer_shards=2).resolved_writer_shards == 2


def test_a_command_is_recorded_through_the_writer_process(split_api: Api) -> None:
    api = split_api
    api.enrol('kiwi-split-cmd')
    # Not connected: still an operator action, recorded by the writer process with its actor.
    assert api.client.post('/api/v1/robots/kiwi-split-cmd/commands', headers=api.admin,
                           json={'command_type': 'ping'}).status_code == 409
    events = api.client.get('/api/v1/robots/kiwi-split-cmd/events',
                            headers=api.viewer).json()['events']
    (sent,) = [e for e in events if e['type'] == 'RobotCommandSent']
    assert sent['data']['outcome'] == 'not_connected' and sent['metadata']['actor']
    # A batch of many robots' events goes to each robot's writer.
    from lekiwi_fleet_server.domain.events import RobotWentStale

    api.enrol('kiwi-split-2')
    assert api.services.store.record_robot_events(
        [RobotWentStale('kiwi-split-cmd', at=1.0), RobotWentStale('kiwi-split-2', at=1.0),
         RobotWentStale('nobody', at=1.0)], now=time.time()) == 2
