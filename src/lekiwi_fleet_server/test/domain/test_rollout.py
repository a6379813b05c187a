"""The rollout state machine: waves, parallelism, gates, deferral, offline retry, resume."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.rollout import Rollout


class Fleet:
    """Drives a Rollout as the engine does: decide, apply, answer goals from a script."""

    def __init__(self, n: int, *, parallelism: int = 100, waves: Iterable[float] = (
            0.05, 0.25, 0.5, 1.0), deadline_s: float = 1000.0, force: bool = False) -> None:
        self.robots = [f'r{i:03d}' for i in range(n)]
        self.offline: set[str] = set()
        self.teleop: set[str] = set()
        self.failing: set[str] = set()
        self.now = 0.0
        self.log: list[ev.DomainEvent] = []
        self.rollout = Rollout()
        self.emit([ev.DeploymentCreated(
            '', deployment_id='d1', release_version='2', manifest_sha256='ab',
            robots=tuple(self.robots), waves=tuple(waves), parallelism=parallelism,
            deadline_s=deadline_s, robot_timeout_s=50.0, force=force, at=0.0)])

    def emit(self, events: list[ev.DomainEvent]) -> None:
        for event in events:
            self.rollout.apply(event)
            self.log.append(event)

    def decide(self) -> list[ev.DomainEvent]:
        out = self.rollout.decide(self.now, lambda r: r not in self.offline,
                                  lambda r: r in self.teleop)
        self.emit(out)
        return out

    def finish_running(self) -> None:
        for robot in self.rollout.running():
            if robot.revert == 'running':
                self.emit([ev.RobotRolledBack(robot.robot_id, deployment_id='d1', to_version='1',
                                              at=self.now)])
            elif robot.robot_id in self.failing:
                self.emit([ev.RobotUpdateFailed(robot.robot_id, deployment_id='d1',
                                                release_version='2', reason='unhealthy',
                                                rolled_back=True, final_version='1')])
            else:
                self.emit([ev.RobotUpdateSucceeded(robot.robot_id, deployment_id='d1',
                                                   release_version='2', previous_version='1')])

    def run(self, steps: int = 50) -> None:
        for _ in range(steps):
            self.now += 1.0
            self.decide()
            self.finish_running()
            if not self.rollout.active or self.rollout.status == 'paused':
                self.decide()
                return

    def of(self, cls: type[ev.DomainEvent]) -> list[ev.DomainEvent]:
        return [e for e in self.log if isinstance(e, cls)]


def test_waves_are_5_25_50_100_percent_and_a_good_release_completes() -> None:
    fleet = Fleet(100)
    assert [len(w) for w in fleet.rollout.wave_plan()] == [5, 20, 25, 50]
    fleet.run()
    assert fleet.rollout.status == 'completed'
    assert [len(e.robots) for e in fleet.of(ev.WaveStarted)] == [5, 20, 25, 50]  # type: ignore
    assert len(fleet.of(ev.RobotUpdateSucceeded)) == 100
    done = fleet.of(ev.DeploymentCompleted)[0]
    assert done.succeeded == 100 and done.failed == 0  # type: ignore[attr-defined]


def test_small_fleets_get_at_least_one_robot_per_wave() -> None:
    assert [len(w) for w in Fleet(3).rollout.wave_plan()] == [1, 1, 1]
    assert [len(w) for w in Fleet(1).rollout.wave_plan()] == [1]


def test_parallelism_limits_robots_in_flight() -> None:
    fleet = Fleet(40, parallelism=4, waves=(1.0,))
    fleet.now = 1.0
    fleet.decide()  # the wave
    started = fleet.decide()
    assert len(started) == 4 and len(fleet.rollout.running()) == 4
    assert fleet.decide() == []
    fleet.run()
    assert fleet.rollout.status == 'completed'


def test_a_failing_first_wave_rolls_the_updated_robots_back_and_stops() -> None:
    fleet = Fleet(100)
    fleet.failing = {'r000'}  # 1 of 5 = 20 %: the rollback gate
    fleet.run()
    assert fleet.rollout.status == 'rolled_back'
    assert len(fleet.of(ev.WaveStarted)) == 1
    reverted = {e.robot_id for e in fleet.of(ev.RobotRollbackStarted)}
    assert reverted == {'r001', 'r002', 'r003', 'r004'}
    assert len(fleet.of(ev.RobotUpdateStarted)) == 5


def test_under_80_percent_success_without_20_percent_failures_pauses_until_resumed() -> None:
    fleet = Fleet(10, waves=(1.0,), deadline_s=5.0)
    fleet.failing = {'r000'}  # 10 % failed: no rollback
    fleet.offline = {'r001', 'r002'}  # skipped at the deadline: 70 % success
    fleet.run()
    assert fleet.rollout.status == 'paused', fleet.log[-3:]
    assert len(fleet.of(ev.RobotUpdateSkipped)) == 2
    fleet.emit([ev.DeploymentResumed('', deployment_id='d1', by='op')])
    fleet.run()
    assert fleet.rollout.status == 'completed'


def test_a_teleoperated_robot_is_deferred_and_picked_up_when_free() -> None:
    fleet = Fleet(2, waves=(1.0,))
    fleet.teleop = {'r001'}
    fleet.run(steps=5)
    assert fleet.rollout.robots['r001'].state == 'pending'
    assert fleet.rollout.robots['r001'].waiting == 'teleop'
    assert len(fleet.of(ev.RobotUpdateDeferred)) == 1  # said once, not every tick
    assert fleet.rollout.status == 'running'
    fleet.teleop.clear()
    fleet.run()
    assert fleet.rollout.status == 'completed'
    assert fleet.rollout.robots['r001'].state == 'succeeded'


def test_force_ignores_teleop() -> None:
    fleet = Fleet(1, force=True)
    fleet.teleop = {'r000'}
    fleet.run()
    assert fleet.rollout.status == 'completed'


def test_an_offline_robot_is_retried_when_it_returns_then_skipped_at_the_deadline() -> None:
    fleet = Fleet(3, waves=(1.0,), deadline_s=10.0)
    fleet.offline = {'r001', 'r002'}
    fleet.run(steps=3)
    fleet.offline = {'r002'}
    fleet.run()
    assert fleet.rollout.robots['r001'].state == 'succeeded'
    assert fleet.rollout.robots['r002'].state == 'skipped'
    assert 'offline' in fleet.rollout.robots['r002'].message


def test_a_robot_without_a_result_times_out_as_failed() -> None:
    fleet = Fleet(1)
    fleet.now = 1.0
    fleet.decide()
    fleet.decide()
    fleet.now = 100.0
    failed = fleet.decide()
    assert isinstance(failed[0], ev.RobotUpdateFailed) and 'no result' in failed[0].reason


def test_abort_waits_for_goals_in_flight() -> None:
    fleet = Fleet(10, waves=(1.0,))
    fleet.now = 1.0
    fleet.decide()
    fleet.decide()
    fleet.emit([ev.DeploymentAbortRequested('', deployment_id='d1', by='op')])
    assert fleet.decide() == []
    fleet.finish_running()
    assert isinstance(fleet.decide()[0], ev.DeploymentAborted)


@pytest.mark.parametrize('cut', [3, 8, 15, 30])
def test_replaying_the_stream_at_any_point_resumes_to_the_same_end(cut: int) -> None:
    fleet = Fleet(20)
    fleet.failing = set()
    fleet.run()
    full = fleet.log
    resumed = Fleet(20)
    resumed.rollout = Rollout.replay(full[:cut])
    resumed.log = list(full[:cut])
    resumed.run()
    assert resumed.rollout.status == 'completed'
    assert {r.robot_id: r.state for r in resumed.rollout.robots.values()} == {
        r: 'succeeded' for r in resumed.robots}


def test_a_robot_that_disappears_mid_deploy_is_asked_again_when_it_returns() -> None:
    fleet = Fleet(1)
    fleet.now = 1.0
    fleet.decide()
    fleet.decide()
    assert fleet.rollout.robots['r000'].state == 'running'
    fleet.offline = {'r000'}
    deferred = fleet.decide()
    assert isinstance(deferred[0], ev.RobotUpdateDeferred) and deferred[0].reason == 'offline'
    fleet.offline = set()
    again = fleet.decide()
    assert isinstance(again[0], ev.RobotUpdateStarted) and again[0].attempt == 2
    assert again[0].goal_id.endswith(':2')


def test_a_busy_robot_is_asked_again_after_a_pause() -> None:
    fleet = Fleet(1)
    fleet.now = 1.0
    fleet.decide()
    fleet.decide()
    fleet.emit([ev.RobotUpdateDeferred('r000', deployment_id='d1', reason='busy', at=1.0)])
    fleet.now = 2.0
    assert fleet.decide() == []
    fleet.now = 7.0
    assert isinstance(fleet.decide()[0], ev.RobotUpdateStarted)
