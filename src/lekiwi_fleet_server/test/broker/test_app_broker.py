"""The app with a broker (role all): REST admin writes, robots acked after the writer's commit,
the dashboard stream over NATS, `/readyz` degraded without NATS; real PostgreSQL and NATS."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from nats_server import NatsServer
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'api'))
from api_harness import ADMIN_TOKEN, BOOT, Api, event_frame, robot_connection  # noqa: E402

from lekiwi_fleet_server.app import create_app  # noqa: E402
from lekiwi_fleet_server.broker.wiring import BrokerWiring  # noqa: E402
from lekiwi_fleet_server.settings import Settings  # noqa: E402


@pytest.fixture
def broker_api(pg_url: str, nats_server: NatsServer, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=pg_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        nats_url=nats_server.url, writer_shards=2, gateway_id='gw-test',
                        broker_publish_timeout_s=1.0, store_retry_s=0.2)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'}, {})


def acked(ws: object, seqs: set[int], timeout_s: float = 20.0) -> set[int]:
    got: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while not seqs <= got:
        left = max(0.01, deadline - time.monotonic())
        frame = json.loads(ws.recv(timeout=left))  # type: ignore[attr-defined]
        if frame.get('topic') == 'fleet/ack' and frame['msg']['boot_id'] == BOOT:
            for first, last in frame['msg']['ranges']:
                got.update(range(first, last + 1))
    return got


def test_robots_are_acked_through_the_writers_and_admin_writes_reach_them(
        broker_api: Api, nats_server: NatsServer) -> None:
    api = broker_api
    assert isinstance(api.services.broker, BrokerWiring)
    robots = {r: api.enrol(r) for r in ('kiwi-1', 'kiwi-2', 'kiwi-3')}  # both shards
    with api.client.websocket_connect('/api/v1/stream',
                                      headers={'Authorization': f'Bearer {ADMIN_TOKEN}'}) as dash:
        assert json.loads(dash.receive_text())['type'] == 'snapshot'
        sockets = {r: robot_connection(api, r, t) for r, t in robots.items()}
        for robot_id, ws in sockets.items():
            for seq in (1, 2, 3):
                ws.send(json.dumps(event_frame(seq, robot_id)))
        for ws in sockets.values():
            assert acked(ws, {1, 2, 3}) >= {1, 2, 3}
        update = json.loads(dash.receive_text())
        assert update['type'] == 'update'
    # The gateway reports what the writers committed for it and what it handed them.
    metrics = api.client.get('/metrics').text
    committed = re.search(r'^lekiwi_gateway_messages_committed_total (\S+)$', metrics, re.M)
    durable = re.search(r'^lekiwi_broker_published_total\{kind="durable"\} (\S+)$', metrics,
                        re.M)
    assert committed and float(committed.group(1)) >= 9, metrics
    assert durable and float(durable.group(1)) >= 9
    for robot_id in robots:
        coverage = api.client.get(f'/api/v1/robots/{robot_id}/sequences', headers=api.admin)
        assert coverage.status_code == 200 and '[1, 3]' in json.dumps(coverage.json())
    # Revoked through the API (a direct database write): the gateway closes the session.
    assert api.client.post('/api/v1/robots/kiwi-1/revoke',
                           headers=api.admin).status_code == 204
    closed = sockets['kiwi-1']
    deadline = time.monotonic() + 20
    with pytest.raises(ConnectionClosed):  # closed by the server (auth_failed: revoked)
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                closed.recv(timeout=1)
    assert api.client.get('/readyz').status_code == 200
    nats_server.stop()
    deadline = time.monotonic() + 20
    while api.client.get('/readyz').status_code != 503:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert 'NATS' in api.client.get('/readyz').text
    nats_server.start()
    for ws in sockets.values():
        ws.close()
