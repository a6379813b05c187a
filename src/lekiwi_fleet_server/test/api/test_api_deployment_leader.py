"""Two server apps on one store and one Redis: only the lease holder's engine drives rollouts."""

from __future__ import annotations

from pathlib import Path

from api_harness import ADMIN_TOKEN, Api
from fastapi.testclient import TestClient
from redis_server import RedisServer  # test/broker/, on the path by test/conftest.py
from test_api_deployment_restart import open_api
from test_api_deployments import FakeRobotAgent, push_release, wait_status

from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings


def test_a_deployment_made_through_the_follower_is_driven_by_the_leader_alone(
        database_url: str, tmp_path: Path, redis_server: RedisServer) -> None:
    def settings(name: str) -> Settings:
        return Settings(database_url=database_url, data_dir=tmp_path / 'data', gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, deployment_tick_s=0.1,
                        redis_url=redis_server.url, gateway_id=name)

    with TestClient(create_app(settings('gw-a'))) as first, \
            TestClient(create_app(settings('gw-b'))) as second:
        leader, follower = open_api(first), open_api(second)
        assert leader.services.deployments.driving  # type: ignore[union-attr]
        assert not follower.services.deployments.driving  # type: ignore[union-attr]
        robot = FakeRobotAgent(leader, 'kiwi-lead')
        try:
            _drive(leader, follower, robot)
        finally:
            robot.ws.close()


def _drive(leader: Api, follower: Api, robot: FakeRobotAgent) -> None:
    push_release(follower, '2')
    made = follower.client.post('/api/v1/deployments', headers=follower.admin,
                                json={'release_version': '2', 'robots': ['kiwi-lead']})
    assert made.status_code == 201, made.text
    deployment_id = made.json()['deployment_id']
    done = wait_status(follower, deployment_id, {'completed'})
    assert [r['state'] for r in done['robots']] == ['succeeded']
    assert len(robot.goals) == 1  # one engine sent it: no second goal from the follower
    # A command through the follower acts on the store's fold, not a stale copy.
    again = follower.client.post(f'/api/v1/deployments/{deployment_id}/pause',
                                 headers=follower.admin)
    assert again.status_code == 409, again.text  # it has ended: refused, with a reason
