"""API test fixtures: the real app (create_app) on SQLite and PostgreSQL via TestClient.

- `api`: the app on `database_url`, with admin and viewer headers.
- `redis_and_nats`: a running redis-server and nats-server (test/broker/redis_and_nats.py) for
  an app sharing its presence and broker, skipped with the reason when a binary is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN, Api
from fastapi.testclient import TestClient
from nats_server import NatsServer
from redis_and_nats import running_redis_and_nats  # test/broker/, on the path by test/conftest.py
from redis_server import RedisServer

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        command_timeout_s=2)
    with TestClient(create_app(settings)) as client:
        services: FleetServices = client.app.state.services  # type: ignore[attr-defined]
        _viewer, viewer_token = create_operator(services.store, 'watcher', 'viewer',
                                                now=time.time())
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})


@pytest.fixture
def redis_and_nats(tmp_path: Path) -> Iterator[tuple[RedisServer, NatsServer]]:
    """Yield a running redis-server and nats-server; stop both after the test."""
    with running_redis_and_nats(tmp_path) as servers:
        yield servers
