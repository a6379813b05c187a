"""The API over a shared registry and broker: live presence, readiness when Redis/NATS go."""

from __future__ import annotations

import json
import time
from pathlib import Path

from api_harness import ADMIN_TOKEN, Api, event_frame, robot_connection
from fastapi.testclient import TestClient
from nats_server import NatsServer  # test/broker/, on the path by test/conftest.py
from redis_server import RedisServer

from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings


def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, 'condition not met in time'
        time.sleep(0.05)


def test_presence_from_the_registry_and_readyz_degraded_while_redis_or_nats_is_down(
        redis_and_nats: tuple[RedisServer, NatsServer], tmp_path: Path) -> None:
    redis, nats = redis_and_nats
    settings = Settings(database_url=f'sqlite:///{tmp_path}/fleet.db', data_dir=tmp_path,
                        gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN,
                        commit_interval_ms=20, command_timeout_s=2,
                        redis_url=redis.url, nats_url=nats.url, gateway_id='gw-api-test',
                        presence_ttl_s=3.0)
    with TestClient(create_app(settings)) as client:
        api = Api(client, client.app.state.services,  # type: ignore[attr-defined]
                  {'Authorization': f'Bearer {ADMIN_TOKEN}'}, {})
        assert client.get('/readyz').json() == {'status': 'ready'}
        token = api.enrol('kiwi-001')
        robot_of = lambda: client.get('/api/v1/robots/kiwi-001', headers=api.admin).json()  # noqa: E731
        assert robot_of()['status'] == 'never_seen' and robot_of()['connected'] is False
        ws = robot_connection(api, 'kiwi-001', token)
        until(lambda: robot_of()['connected'] is True)
        assert robot_of()['status'] == 'online'
        listed = client.get('/api/v1/robots?status=online', headers=api.admin).json()
        assert [r['robot_id'] for r in listed] == ['kiwi-001']

        redis.stop()
        ready = client.get('/readyz')
        assert ready.status_code == 503
        body = ready.json()
        assert body['code'] == 'degraded' and 'redis' in body['detail']
        assert 'nats' not in body['detail'] and 'store' not in body['detail']
        # The robot keeps its session and its messages are still committed and acked.
        ws.send(json.dumps(event_frame(1, 'kiwi-001')))
        acked = json.loads(ws.recv(timeout=10))
        assert acked['op'] == 'publish' and acked['topic'] == 'fleet/ack', acked
        # Status cannot be told without the registry: 503, not a guess.
        assert client.get('/api/v1/robots/kiwi-001', headers=api.admin).status_code == 503

        redis.start()  # empty (no persistence); the gateway's next refresh claims again
        until(lambda: client.get('/readyz').status_code == 200)
        until(lambda: robot_of()['connected'] is True)

        nats.stop()
        until(lambda: client.get('/readyz').status_code == 503)
        assert 'nats' in client.get('/readyz').json()['detail']
        nats.start()
        until(lambda: client.get('/readyz').status_code == 200, timeout=20)
        ws.close()
