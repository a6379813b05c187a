"""The stream's snapshot and GraphQL read presence from the live registry (Redis), like REST."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import redis as redis_lib
from api_harness import ADMIN_TOKEN, Api, robot_connection
from fastapi.testclient import TestClient
from nats_server import NatsServer  # test/broker/, on the path by test/conftest.py
from redis_server import RedisServer

from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.broker.presence import RedisRegistry
from lekiwi_fleet_server.settings import Settings

ADMIN = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
ROBOT = '{ robot(robotId: "kiwi-away") { status connected } }'
ONLINE = '{ robots(filter: {status: "online"}) { totalCount edges { node { robotId } } } }'


def gql(client: TestClient, query: str) -> dict[str, Any]:
    response = client.post('/api/v1/graphql', json={'query': query}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def snapshot_row(client: TestClient, robot_id: str) -> dict[str, Any]:
    with client.websocket_connect('/api/v1/stream', headers=ADMIN) as stream:
        first = json.loads(stream.receive_text())
    assert first['type'] == 'snapshot', first
    return next(r for r in first['robots'] if r['robot_id'] == robot_id)


def claim_elsewhere(url: str, robot_id: str) -> None:
    """Claim the robot for another gateway of the fleet, as that gateway would."""

    async def claim() -> None:
        registry = RedisRegistry(url, 30.0)
        try:
            await registry.claim(robot_id, 'gw-elsewhere', time.time())
        finally:
            await registry.close()

    asyncio.run(claim())


def test_stream_snapshot_and_graphql_show_the_registry_presence_not_the_read_model(
        redis_and_nats: tuple[RedisServer, NatsServer], tmp_path: Path) -> None:
    redis, nats = redis_and_nats
    settings = Settings(database_url=f'sqlite:///{tmp_path}/fleet.db', data_dir=tmp_path,
                        gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN,
                        commit_interval_ms=20, redis_url=redis.url, nats_url=nats.url,
                        gateway_id='gw-here', presence_ttl_s=30.0)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        api = Api(client, services, ADMIN, {})
        api.enrol('kiwi-away')
        assert snapshot_row(client, 'kiwi-away')['status'] == 'never_seen'
        assert gql(client, ROBOT)['data']['robot'] == {'status': 'never_seen',
                                                       'connected': False}

        # Another gateway of the fleet holds the robot; its presence event is not committed
        # (the read model has not heard of it): every operator surface says online anyway.
        claim_elsewhere(redis.url, 'kiwi-away')
        stored = services.store.get_robot('kiwi-away', now=time.time())
        assert stored.status == 'never_seen'
        assert client.get('/api/v1/robots/kiwi-away', headers=ADMIN).json()['status'] == 'online'
        assert snapshot_row(client, 'kiwi-away')['status'] == 'online'
        assert gql(client, ROBOT)['data']['robot'] == {'status': 'online', 'connected': True}
        online = gql(client, ONLINE)['data']['robots']
        assert online['totalCount'] == 1
        assert [e['node']['robotId'] for e in online['edges']] == ['kiwi-away']

        # A robot this gateway holds whose claim lapsed (a loaded host refreshed late; the
        # next refresh claims it again) is still online: its session is here.
        ws = robot_connection(api, 'kiwi-here', api.enrol('kiwi-here'))
        deadline = time.monotonic() + 10
        while snapshot_row(client, 'kiwi-here')['status'] != 'online':
            assert time.monotonic() < deadline, 'kiwi-here never came online'
            time.sleep(0.05)
        redis_client = redis_lib.Redis.from_url(redis.url)
        redis_client.delete('lekiwi:presence:own:kiwi-here')
        redis_client.close()
        assert snapshot_row(client, 'kiwi-here')['status'] == 'online'
        here = gql(client, '{ robot(robotId: "kiwi-here") { status connected } }')
        assert here['data']['robot'] == {'status': 'online', 'connected': True}
        ws.close()

        # Without the registry the status cannot be told: an error, never a guess.
        redis.stop()
        with client.websocket_connect('/api/v1/stream', headers=ADMIN) as stream:
            first = json.loads(stream.receive_text())
        assert first['type'] == 'error' and first['code'] == 'presence_unavailable', first
        result = gql(client, ROBOT)
        assert result['data']['robot'] is None
        assert 'presence registry' in result['errors'][0]['message']
