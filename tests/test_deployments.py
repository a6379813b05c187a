"""Deployments end to end: real fleet server on PostgreSQL, real uplinks and deploy executors.

Several robots (each an uplink and a deploy executor under its own namespace, each with its own
release directory) take releases pushed with the CLI and rolled out through the REST API.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from deploy_harness import (
    DeployRobot,
    TeleopPublisher,
    make_release,
    push_release,
    wait_deployment,
)
from system_harness import wait_until

PAYLOAD = os.urandom(400_000)


@pytest.fixture
def robots(fleet_server, processes, ros_domain, tmp_path):  # type: ignore[no-untyped-def]
    made = [DeployRobot(processes, fleet_server, ros_domain, f'kiwi-{i}', tmp_path / f'r{i}')
            for i in range(3)]
    wait_until(lambda: all(r.connected() for r in made), 60, interval=0.5,
               message='the robots to connect')
    yield made
    for robot in made:
        robot.stop_app()


def deploy(server, version: str, robots: list[str], **options):  # type: ignore[no-untyped-def]
    body = {'release_version': version, 'robots': robots, 'health_timeout_s': 30.0,
            'robot_timeout_s': 120.0} | options
    return server.request('POST', '/api/v1/deployments', body)['deployment_id']


def test_good_release_wave_by_wave_then_only_changed_files_then_a_bad_one_rolls_back(
        fleet_server, robots, tmp_path: Path) -> None:
    ids = [r.robot_id for r in robots]
    push_release(fleet_server, make_release(tmp_path, '1.0', 'good', PAYLOAD), '1.0')
    first = wait_deployment(fleet_server, deploy(fleet_server, '1.0', ids, waves=[0.3, 1.0]),
                            {'completed', 'paused', 'rolled_back'})
    assert first['status'] == 'completed', first
    assert [len(w['robots']) for w in first['waves']] == [1, 2]
    assert all(r.current() == '1.0' and r.app() for r in robots)

    tree = make_release(tmp_path, '1.1', 'good', PAYLOAD)
    (tree / 'launch' / 'robot.launch.py').write_text('# release 1.1, changed\n')
    push_release(fleet_server, tree, '1.1')
    second = wait_deployment(fleet_server, deploy(fleet_server, '1.1', ids),
                             {'completed', 'paused', 'rolled_back'})
    assert second['status'] == 'completed', second
    for robot in second['robots']:
        assert robot['previous_version'] == '1.0'
        assert 0 < robot['transferred_bytes'] < 100 < robot['full_bytes'], robot
    assert all(r.current() == '1.1' for r in robots)

    push_release(fleet_server, make_release(tmp_path, '2.0', 'silent', PAYLOAD), '2.0')
    bad = wait_deployment(fleet_server, deploy(fleet_server, '2.0', ids, waves=[0.3, 1.0]),
                          {'completed', 'paused', 'rolled_back'})
    assert bad['status'] == 'rolled_back', bad
    assert len(bad['waves']) == 1
    failed = [r for r in bad['robots'] if r['state'] == 'failed']
    assert len(failed) == 1 and 'app/alive' in failed[0]['message']
    untouched = [r for r in bad['robots'] if r['state'] == 'pending']
    assert len(untouched) == 2  # the rollout stopped after the first wave
    assert all(r.current() == '1.1' and r.app() for r in robots)


def test_a_teleoperated_robot_is_deferred_until_the_operator_stops(
        fleet_server, robots, ros_domain, tmp_path: Path) -> None:
    robot = robots[0]
    teleop = TeleopPublisher(ros_domain, robot.ns)
    try:
        teleop.active = True
        # Until the server shows the robot driven, DDS may not have matched the publisher yet
        # (a fixed second was too short on a loaded machine): then nothing would be deferred.
        wait_until(lambda: fleet_server.request(
            'GET', f'/api/v1/robots/{robot.robot_id}')['teleop_active'], 60, interval=0.2,
            message='the server to see the robot teleoperated')
        push_release(fleet_server, make_release(tmp_path, '1.0', 'good', PAYLOAD), '1.0')
        deployment_id = deploy(fleet_server, '1.0', [robot.robot_id])
        try:
            wait_until(lambda: fleet_server.request(
                'GET', f'/api/v1/deployments/{deployment_id}')['robots'][0]['deferrals'] >= 1,
                90, interval=0.5, message='the robot to be deferred')
        except AssertionError as exc:
            shown = fleet_server.request('GET', f'/api/v1/deployments/{deployment_id}')
            raise AssertionError(f'{exc}: {shown} {robot.state()}') from None
        assert robot.current() == ''  # nothing was installed while someone was driving
        teleop.active = False
        done = wait_deployment(fleet_server, deployment_id, {'completed', 'paused'})
        assert done['status'] == 'completed', done
        assert robot.current() == '1.0' and robot.app()
    finally:
        teleop.close()


def test_sigkill_of_the_executor_during_switch_ends_with_one_healthy_release(
        fleet_server, robots, tmp_path: Path) -> None:
    robot = robots[0]
    push_release(fleet_server, make_release(tmp_path, '1.0', 'good', PAYLOAD), '1.0')
    done = wait_deployment(fleet_server, deploy(fleet_server, '1.0', [robot.robot_id]),
                           {'completed', 'paused', 'rolled_back'})
    assert done['status'] == 'completed', done
    push_release(fleet_server, make_release(tmp_path, '1.1', 'good', PAYLOAD[:-10]), '1.1')
    deploy(fleet_server, '1.1', [robot.robot_id], robot_timeout_s=30.0)
    wait_until(lambda: robot.state().get('phase') in ('switch', 'post_check'), 120,
               interval=0.02, message='the executor to switch')
    assert robot.executor is not None
    robot.executor.kill(signal.SIGKILL)
    robot.start_executor()
    wait_until(lambda: robot.state().get('phase') == 'idle' and robot.app(), 120,
               interval=0.2, message='the restarted executor to recover')
    app = robot.app()
    assert app is not None and app['release'] == robot.current()
    assert robot.current() in ('1.0', '1.1')
    assert (robot.state().get('current') or '') == robot.current()
