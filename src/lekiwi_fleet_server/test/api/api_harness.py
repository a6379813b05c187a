"""What API tests hold: the running app's client, services and operator headers."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

from lekiwi_fleet_server.api.services import FleetServices

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


