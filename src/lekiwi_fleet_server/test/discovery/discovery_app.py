"""What the discovery tests share: the admin token, server settings, REST helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from lekiwi_fleet_server.settings import Settings

ADMIN_TOKEN = 'lkw_discovery_admin_token_0123'
ADMIN = {'Authorization': f'Bearer {ADMIN_TOKEN}'}


def discovery_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Return server settings for a discovery test on an embedded database."""
    values: dict[str, Any] = {
        'database_url': f'sqlite:///{tmp_path / "fleet.db"}', 'data_dir': tmp_path,
        'gateway_port': 0, 'bootstrap_admin_token': ADMIN_TOKEN, 'commit_interval_ms': 20,
        'presence_timeout_s': 2.0, 'ping_interval_s': 0.5,
        'presence_stale_s': 1.0}
    values.update(overrides)
    return Settings(**values)


def wait_for(check: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError('condition not met in time')


def enrol(client: TestClient, robot_id: str) -> str:
    response = client.post('/api/v1/robots', headers=ADMIN, json={'robot_id': robot_id})
    assert response.status_code == 201, response.text
    return str(response.json()['token'])


def robot_socket(port: int, robot_id: str, token: str) -> ClientConnection:
    ws = connect(f'ws://127.0.0.1:{port}/', open_timeout=5, legacy=True)
    ws.send(json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                        'protocol': ['lekiwi-fleet/1']}))
    assert json.loads(ws.recv(timeout=5))['msg'] == 'authenticated'
    return ws


def inventory(client: TestClient, **params: Any) -> dict[str, dict[str, Any]]:
    response = client.get('/api/v1/inventory', headers=ADMIN, params=params)
    assert response.status_code == 200, response.text
    return {e['key']: e for e in response.json()}
