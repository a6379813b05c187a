"""The engine reaches robots through a router: its connectivity, its goals, its results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.deployments.engine import (
    DeploymentEngine,
    DeploymentRequest,
    robots_to_look_up,
)
from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.rollout import Rollout
from lekiwi_fleet_server.gateway.actions import (
    ActionRelay,
    ActionResult,
    result_message,
    result_of_message,
)
from lekiwi_fleet_server.gateway.commands import CommandError
from lekiwi_fleet_server.store.deployments import DeploymentStore


class Releases:
    """Every release exists."""

    def get(self, version: str) -> Any:
        return SimpleNamespace(version=version, manifest_sha256='0' * 64)


class Router:
    """Robots reachable through the router (held by any gateway); the goals it was given."""

    def __init__(self, online: set[str]) -> None:
        self.results = ActionRelay()
        self.online = online
        self.goals: list[tuple[str, str]] = []
        self.down: CommandError | None = None

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        if self.down is not None:
            raise self.down
        return {r for r in robot_ids if r in self.online}

    async def send_action_goal(self, robot_id: str, goal_id: str, args: Mapping[str, Any]
                               ) -> bool:
        self.goals.append((robot_id, goal_id))
        return robot_id in self.online

    async def cancel_action_goal(self, robot_id: str, goal_id: str) -> bool:
        return robot_id in self.online


def make(engine: Engine, router: Router) -> DeploymentEngine:
    return DeploymentEngine(DeploymentStore(engine), Releases(), router,  # type: ignore[arg-type]
                            public_url='http://fleet', teleop_robots=set, now=time.time,
                            tick_s=0.02)


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        await asyncio.sleep(0.02)


def succeeded(robot_id: str, goal_id: str) -> ActionResult:
    return ActionResult(robot_id, goal_id, 4, {'success': True, 'final_version': '2',
                                               'previous_version': '1', 'message': 'healthy'})


def test_a_result_message_round_trips_and_a_bad_one_is_refused() -> None:
    result = succeeded('kiwi-1', 'dep-1:kiwi-1:1')
    assert result_of_message(result_message(result)) == result
    for bad in (b'[]', b'not json', orjson.dumps({'robot_id': 'kiwi-1', 'goal_id': 'g',
                                                  'status': '4', 'values': {}}),
                orjson.dumps({'robot_id': '', 'goal_id': 'g', 'status': 4, 'values': {}})):
        with pytest.raises(ValueError):
            result_of_message(bad)


def test_only_pending_and_running_robots_are_looked_up() -> None:
    rollout = Rollout.replay([ev.DeploymentCreated(
        '', deployment_id='dep-1', release_version='2', manifest_sha256='0' * 64,
        robots=('a', 'b', 'c'), waves=(1.0,), parallelism=10, success_gate=0.8,
        rollback_gate=0.2, deadline_s=60, robot_timeout_s=60, health_timeout_s=5,
        force=False, created_by='test', at=0.0)])
    rollout.robots['b'].state = 'running'
    rollout.robots['c'].state = 'succeeded'
    assert robots_to_look_up([rollout]) == {'a', 'b'}


def test_a_robot_the_router_reaches_is_deployed_and_its_result_twice_records_once(
        sqlite_engine: Engine) -> None:
    router = Router({'kiwi-elsewhere'})  # held by another gateway: no local session at all
    deployments = make(sqlite_engine, router)

    async def run() -> Rollout:
        await deployments.start()
        try:
            made = await deployments.create(
                DeploymentRequest('2', ('kiwi-elsewhere',), waves=(1.0,)), by='test')
            await until(lambda: router.goals)
            robot_id, goal_id = router.goals[0]
            router.results.result(succeeded(robot_id, goal_id))
            router.results.result(succeeded(robot_id, goal_id))  # from a second path: ignored
            await until(lambda: deployments.get(made.deployment_id).status == 'completed')
            await asyncio.sleep(0.1)  # a second record would have landed by now
            return deployments.get(made.deployment_id)
        finally:
            await deployments.stop()

    rollout = asyncio.run(run())
    assert rollout.robots['kiwi-elsewhere'].state == 'succeeded'
    assert router.goals == [('kiwi-elsewhere', f'{rollout.deployment_id}:kiwi-elsewhere:1')]
    stored = DeploymentStore(sqlite_engine).events(rollout.deployment_id)
    assert sum(isinstance(e, ev.RobotUpdateSucceeded) for e in stored) == 1
    assert router.results.listener is None  # a stopped engine hears no results


def test_nothing_is_decided_while_the_router_cannot_tell_who_is_connected(
        sqlite_engine: Engine) -> None:
    router = Router({'kiwi-1'})
    router.down = CommandError('redis: connection refused')
    deployments = make(sqlite_engine, router)

    async def run() -> Rollout:
        await deployments.start()
        try:
            made = await deployments.create(DeploymentRequest('2', ('kiwi-1',), waves=(1.0,)),
                                            by='test')
            await asyncio.sleep(0.2)  # ten ticks
            assert not router.goals
            stored = DeploymentStore(sqlite_engine).events(made.deployment_id)
            assert [type(e) for e in stored] == [ev.DeploymentCreated]  # not deferred 'offline'
            router.down = None
            await until(lambda: router.goals)
            return deployments.get(made.deployment_id)
        finally:
            await deployments.stop()

    assert asyncio.run(run()).robots['kiwi-1'].state == 'running'
