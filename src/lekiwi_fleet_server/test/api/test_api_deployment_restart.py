"""A server restarted mid-rollout resumes the deployment from the store."""

from __future__ import annotations

import time
from pathlib import Path

from api_harness import ADMIN_TOKEN, Api
from fastapi.testclient import TestClient
from test_api_deployments import FakeRobotAgent, push_release, wait_status

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings


def open_api(client: TestClient) -> Api:
    services = client.app.state.services  # type: ignore[attr-defined]
    _op, viewer = create_operator(services.store, f'v{time.monotonic_ns()}', 'viewer',
                                  now=time.time())
    return Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
               {'Authorization': f'Bearer {viewer}'})


def test_restart_mid_rollout_resumes_from_the_store(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN,
                        deployment_tick_s=0.1)
    with TestClient(create_app(settings)) as client:
        api = open_api(client)
        robots = [FakeRobotAgent(api, f'kiwi-{i}') for i in range(2)]
        robots[1].go.clear()  # the second wave's robot holds its answer over the restart
        push_release(api, '2')
        deployment_id = api.client.post('/api/v1/deployments', headers=api.admin, json={
            'release_version': '2', 'all': True, 'waves': [0.5, 1.0],
            'robot_timeout_s': 3.0}).json()['deployment_id']
        deadline = time.monotonic() + 20
        while not robots[1].goals:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The server is gone, and the robots' connections with it. A new server on the same store
    # picks the deployment up where it was and drives it on: the robot whose goal was in
    # flight is offline now, so it waits to be asked again; an abort then ends it.
    with TestClient(create_app(settings)) as client:
        api = open_api(client)
        shown = api.client.get(f'/api/v1/deployments/{deployment_id}', headers=api.viewer).json()
        assert shown['status'] == 'running'
        assert shown['robots'][0]['state'] == 'succeeded'
        deadline = time.monotonic() + 20
        while True:
            shown = api.client.get(f'/api/v1/deployments/{deployment_id}',
                                   headers=api.viewer).json()
            if shown['robots'][1]['waiting'] == 'offline':
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        assert api.client.post(f'/api/v1/deployments/{deployment_id}/abort',
                               headers=api.admin).status_code == 200
        done = wait_status(api, deployment_id, {'aborted'})
        assert [r['state'] for r in done['robots']] == ['succeeded', 'pending']
