"""Fleet timeline, teleop sessions and the mapping of store errors onto HTTP statuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN, Api
from fastapi.testclient import TestClient

from lekiwi_fleet_server.app import create_app, open_store
from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.settings import Settings
from lekiwi_fleet_server.store.interface import PresenceChange, StoreUnavailable


def test_fleet_timeline_and_teleop_sessions(api: Api) -> None:
    api.enrol('kiwi-a')
    api.enrol('kiwi-b')
    now = time.time()
    api.services.store.commit_batch([], [PresenceChange('kiwi-a', True, now, 'connected'),
                                         PresenceChange('kiwi-b', True, now, 'connected')],
                                    now=now)
    page = api.client.get('/api/v1/timeline?limit=1000', headers=api.viewer).json()
    robots = {e['robot_id'] for e in page['entries']}
    assert {'kiwi-a', 'kiwi-b'} <= robots
    positions = [e['position'] for e in page['entries']]
    assert positions == sorted(positions)
    one = api.client.get('/api/v1/timeline?robot_id=kiwi-b', headers=api.viewer).json()
    assert {e['robot_id'] for e in one['entries']} == {'kiwi-b'}
    assert api.client.get('/api/v1/timeline?limit=5000', headers=api.viewer).status_code == 422
    sessions = api.client.get('/api/v1/robots/kiwi-a/teleop-sessions', headers=api.viewer)
    assert sessions.status_code == 200 and sessions.json() == []
    assert api.client.get('/api/v1/robots/ghost/teleop-sessions',
                          headers=api.viewer).status_code == 404


def test_store_errors_become_422_and_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api.enrol('kiwi-t')
    unknown_field = api.client.get('/api/v1/robots/kiwi-t/telemetry?start=0&end=60&bucket_s=60'
                                   '&fields=no_such_field', headers=api.viewer)
    assert unknown_field.status_code == 422

    def down() -> None:
        raise StoreUnavailable('database is down')

    monkeypatch.setattr(api.services.store, 'ping', down)
    assert api.client.get('/readyz').status_code == 503

    def summary_down(**_kw: object) -> None:
        raise StoreUnavailable('database is down')

    monkeypatch.setattr(api.services.store, 'fleet_summary', summary_down)
    response = api.client.get('/api/v1/fleet/summary', headers=api.viewer)
    assert response.status_code == 503 and 'database is down' in response.json()['detail']


def test_bootstrap_admin_of_a_viewer_token_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN)
    store = open_store(settings)  # the embedded default: sqlite under data_dir
    try:
        store.create_operator('taken', 'viewer', hash_token(ADMIN_TOKEN), now=time.time())
    finally:
        store.close()
    assert (tmp_path / 'fleet.db').exists()
    with pytest.raises(ValueError, match='bootstrap admin token'):
        with TestClient(create_app(settings)):
            pass
    # The same data directory with a fresh admin token starts, and the admin works.
    fresh = settings.model_copy(update={'bootstrap_admin_token': ADMIN_TOKEN + 'x'})
    with TestClient(create_app(fresh)) as client:
        headers = {'Authorization': f'Bearer {ADMIN_TOKEN}x'}
        assert client.get('/api/v1/robots', headers=headers).status_code == 200
