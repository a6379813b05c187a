"""The deployments' scrape-time metrics (deployments/collector.py) on folds of real events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from lekiwi_fleet_server.deployments.collector import DeploymentCollector
from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.rollout import Rollout


def _rollout(deployment_id: str, *more: ev.DomainEvent) -> Rollout:
    created = ev.DeploymentCreated('', deployment_id=deployment_id, release_version='2',
                                   manifest_sha256='0' * 64, robots=('a', 'b', 'c'),
                                   waves=(1.0,), at=0.0)
    return Rollout.replay([created, *more])


def _scrape(collector: DeploymentCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_robots_per_state_and_status_of_each_deployment_in_progress() -> None:
    paused = _rollout(
        'dep-p', ev.WaveStarted('', deployment_id='dep-p', wave=0, robots=('a', 'b', 'c')),
        ev.RobotUpdateStarted('a', deployment_id='dep-p', goal_id='g', attempt=1),
        ev.RobotUpdateFailed('a', deployment_id='dep-p', reason='unhealthy'),
        ev.RobotUpdateStarted('b', deployment_id='dep-p', goal_id='g2', attempt=1),
        ev.DeploymentPaused('', deployment_id='dep-p', reason='wave 1: 0/3 updated'))
    ended = _rollout('dep-e', ev.DeploymentAborted('', deployment_id='dep-e'))
    text = _scrape(DeploymentCollector(lambda: {'paused': 1, 'completed': 4},
                                       lambda: [paused, ended]))
    labels = 'deployment_id="dep-p",release_version="2"'
    assert f'lekiwi_deployment_status{{{labels},status="paused"}} 1.0' in text
    for state, count in (('failed', 1), ('running', 1), ('pending', 1), ('succeeded', 0)):
        assert f'lekiwi_deployment_robots{{{labels},state="{state}"}} {count}.0' in text
    assert 'dep-e' not in text  # ended: its series go, it is counted by status only
    assert 'lekiwi_deployments{status="paused"} 1.0' in text
    assert 'lekiwi_deployments{status="completed"} 4.0' in text
    assert 'lekiwi_deployments{status="rolled_back"} 0.0' in text  # every status, 0 or not
    assert 'lekiwi_deployments_state_up 1.0' in text


def test_an_unreadable_read_model_leaves_metrics_answering() -> None:
    def down() -> dict[str, int]:
        raise OSError('connection refused')

    text = _scrape(DeploymentCollector(down, lambda: [_rollout('dep-r')]))
    assert 'lekiwi_deployments_state_up 0.0' in text
    assert 'lekiwi_deployments{' not in text  # no made-up zeros while the database is down
    assert 'lekiwi_deployment_status{deployment_id="dep-r",release_version="2",' \
           'status="running"} 1.0' in text
