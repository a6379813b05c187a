"""API test fixtures: the real app (create_app) on SQLite and PostgreSQL via TestClient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.api.services import FleetServices
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings

ADMIN_TOKEN = 'lkw_test_admin_token_0123456789'


@dataclass
class Api:
    client: TestClient
    services: FleetServices
    admin: dict[str, str]
    viewer: dict[str, str]

    @property
    def gateway_url(self) -> str:
        return f'ws://127.0.0.1:{self.services.gateway.port}/'

    def enrol(self, robot_id: str, tags: list[str] | None = None) -> str:
        response = self.client.post('/api/v1/robots', headers=self.admin,
                                    json={'robot_id': robot_id, 'tags': tags or []})
        assert response.status_code == 201, response.text
        return str(response.json()['token'])


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        bus_flush_ms=20, command_timeout_s=2)
    with TestClient(create_app(settings)) as client:
        services: FleetServices = client.app.state.services  # type: ignore[attr-defined]
        _viewer, viewer_token = create_operator(services.store, 'watcher', 'viewer',
                                                now=time.time())
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})
