"""The rollout engine: the shell around `Rollout` that sends goals and records what happens.

Every tick it asks each active deployment what should happen next (`Rollout.decide`, given who
is connected and who is being teleoperated), appends those events, and performs what they
ask for: a `RobotUpdateStarted` sends the robot a Deploy goal, a `RobotRollbackStarted` a goal
of the robot's previous release. Robots' `action_result` frames come back and become events
too. It reaches robots through the router the API's commands use (broker/routing.py): with
several gateways, who is connected is the presence registry's view, goals go to the gateway
holding the robot, and every gateway's results reach the one engine that drives (a result
seen twice, or one of an old goal, changes nothing: it is checked against the fold).

All state is the fold of the stored streams: a server restarted mid-rollout loads the active
ones and carries on (a goal sent before the restart times out after `robot_timeout_s` unless
its result arrives; the robot's executor answers a resent goal of the release it already runs
with success).

Two deployments aimed at the same robot: refused (409) while the first is active; robots are
never queued behind another deployment, so what runs on a robot is always one deployment's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.rollout import Rollout
from lekiwi_fleet_server.gateway.actions import ActionRelay, ActionResult
from lekiwi_fleet_server.gateway.commands import CommandError
from lekiwi_fleet_server.store.deployments import DeploymentStore
from lekiwi_fleet_server.store.interface import ConcurrencyConflict
from lekiwi_fleet_server.store.releases import ReleaseStore

log = logging.getLogger(__name__)

GOAL_SUCCEEDED, GOAL_CANCELED = 4, 5


class DeploymentRefused(ValueError):
    """A deployment request cannot be honoured (unknown release, robot busy, bad state)."""


class UnknownDeployment(KeyError):
    """No deployment of that id."""


@dataclass(frozen=True, slots=True)
class DeploymentRequest:
    release_version: str
    robots: tuple[str, ...]
    waves: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0)
    parallelism: int = 100
    success_gate: float = 0.8
    rollback_gate: float = 0.2
    deadline_s: float = 3600.0
    robot_timeout_s: float = 600.0
    health_timeout_s: float = 60.0
    force: bool = False


class GoalRouter(Protocol):
    """How the engine reaches robots: broker/routing.py's LocalRouter or NatsRouter."""

    results: ActionRelay  # the robots' Deploy results; the driving engine listens

    async def connected(self, robot_ids: Collection[str]) -> set[str]:
        """Return those of the robots the router can reach now; raise CommandError."""
        ...

    async def send_action_goal(self, robot_id: str, goal_id: str, args: Mapping[str, Any]
                               ) -> bool: ...

    async def cancel_action_goal(self, robot_id: str, goal_id: str) -> bool: ...


def robots_to_look_up(rollouts: Iterable[Rollout]) -> set[str]:
    """Return the robots whose connection the next decisions may ask about."""
    # decide() asks about pending robots (to start or defer them, a wave it starts in the same
    # tick included) and running ones (gone mid-deploy); ended robots need no lookup.
    return {r.robot_id for rollout in rollouts for r in rollout.robots.values()
            if r.state in ('pending', 'running')}


class DeploymentEngine:
    """Drive deployments; one instance per server, built in the lifespan."""

    def __init__(self, store: DeploymentStore, releases: ReleaseStore, router: GoalRouter, *,
                 public_url: str, teleop_robots: Callable[[], set[str]],
                 now: Callable[[], float], tick_s: float = 0.5,
                 on_change: Callable[[Rollout], None] = lambda r: None,
                 on_transition: Callable[[Rollout, str], None] = lambda r, s: None) -> None:
        self._store = store
        self.store = store
        self._releases = releases
        self._router = router
        self._url = public_url.rstrip('/')
        self._teleop_robots = teleop_robots
        self._now = now
        self._tick_s = tick_s
        self._on_change = on_change
        self._on_transition = on_transition  # (rollout, its status before): metrics count them
        self._active: dict[str, Rollout] = {}
        self._lock = asyncio.Lock()  # one writer of the streams in this process
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def driving(self) -> bool:
        """Tell whether this engine ticks (its process holds the lease: leadership.py)."""
        return self._task is not None

    async def start(self) -> None:
        """Load the active deployments (resume after a restart) and start ticking."""
        async with self._lock:
            self._active.clear()  # another process may have driven them since: reload all
            await self._load_new()
        self._router.results.listener = self._on_result
        self._task = asyncio.create_task(self._loop(), name='deployment-engine')

    async def stop(self) -> None:
        self._router.results.listener = None  # results seen while not driving: not ours
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _load_new(self) -> None:
        """Load the active deployments this engine does not hold (made by another process)."""
        for deployment_id in await run_in_threadpool(self._store.active_ids):
            if deployment_id in self._active:
                continue
            rollout = await run_in_threadpool(self._store.load, deployment_id)
            if rollout is not None and rollout.active:
                self._active[deployment_id] = rollout
                log.info('driving deployment %s (%s)', deployment_id, rollout.status)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bad tick must not end the engine: log it, try again
                log.exception('deployment engine tick failed')
            try:
                await asyncio.wait_for(self._wake.wait(), self._tick_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    # -- commands -----------------------------------------------------------------------------
    def get(self, deployment_id: str) -> Rollout:
        # Not driving: another process appends, so the store's fold is the current one.
        held = self._active.get(deployment_id) if self.driving else None
        rollout = held or self._store.load(deployment_id)
        if rollout is None:
            raise UnknownDeployment(deployment_id)
        return rollout

    async def create(self, request: DeploymentRequest, *, by: str) -> Rollout:
        """Start a deployment; raise DeploymentRefused."""
        info = await run_in_threadpool(self._releases.get, request.release_version)
        if info is None:
            raise DeploymentRefused(f'no release {request.release_version}')
        if not request.robots:
            raise DeploymentRefused('no robots targeted')
        async with self._lock:
            if not self.driving:  # another process drives: see what it made since
                self._active.clear()
                await self._load_new()
            busy = sorted({r for d in self._active.values() if d.active for r in d.robots}
                          & set(request.robots))
            if busy:
                raise DeploymentRefused(
                    f'robots already in an active deployment: {", ".join(busy[:10])}')
            deployment_id = f'dep-{uuid.uuid4().hex[:12]}'
            rollout = Rollout()
            created = ev.DeploymentCreated(
                '', deployment_id=deployment_id, release_version=request.release_version,
                manifest_sha256=info.manifest_sha256, robots=tuple(request.robots),
                waves=tuple(request.waves), parallelism=request.parallelism,
                success_gate=request.success_gate, rollback_gate=request.rollback_gate,
                deadline_s=request.deadline_s, robot_timeout_s=request.robot_timeout_s,
                health_timeout_s=request.health_timeout_s, force=request.force, created_by=by,
                at=self._now())
            await run_in_threadpool(self._store.append, rollout, [created], now=self._now())
            self._active[deployment_id] = rollout
            self._on_transition(rollout, 'new')
        self._wake.set()
        return rollout

    async def command(self, deployment_id: str, action: str, *, by: str) -> Rollout:
        """Pause, resume, abort or roll back a deployment; raise DeploymentRefused."""
        async with self._lock:
            if not self.driving:  # the leader appended since: command the stored fold
                self._active.pop(deployment_id, None)
                await self._load_new()
            rollout = self._active.get(deployment_id)
            if rollout is None:
                if await run_in_threadpool(self._store.load, deployment_id) is None:
                    raise UnknownDeployment(deployment_id)
                raise DeploymentRefused(f'deployment {deployment_id} has ended')
            now = self._now()
            allowed = {
                'pause': ({'running'}, ev.DeploymentPaused(
                    '', deployment_id=deployment_id, reason=f'paused by {by}', at=now)),
                'resume': ({'paused'}, ev.DeploymentResumed(
                    '', deployment_id=deployment_id, by=by, at=now)),
                'abort': ({'running', 'paused'}, ev.DeploymentAbortRequested(
                    '', deployment_id=deployment_id, by=by, at=now)),
                'rollback': ({'running', 'paused', 'aborting'}, ev.DeploymentRollbackStarted(
                    '', deployment_id=deployment_id, reason=f'rolled back by {by}', at=now)),
            }
            if action not in allowed:
                raise DeploymentRefused(f'unknown action {action!r}')
            statuses, event = allowed[action]
            if rollout.status not in statuses:
                raise DeploymentRefused(f'cannot {action} a deployment that is {rollout.status}')
            await self._append(rollout, [event])
        self._wake.set()
        return rollout

    def active_rollouts(self) -> list[Rollout]:
        """Return the deployments in progress (the folds of their stored streams)."""
        # Read from the /metrics thread while the loop changes them: list() copies the values
        # in one C call under the GIL, and a rollout's robots are fixed at its creation.
        return list(self._active.values())

    # -- the tick -----------------------------------------------------------------------------
    async def tick(self) -> None:
        """Advance every active deployment by what its state machine decides."""
        async with self._lock:
            await self._load_new()  # made through another process's API (leadership.py)
        if not self._active:
            return
        teleop = await run_in_threadpool(self._teleop_robots)
        async with self._lock:
            try:
                # Under the lock: a deployment created meanwhile is looked up with the rest.
                online = await self._router.connected(robots_to_look_up(self._active.values()))
            except CommandError as exc:  # presence unknown: decide nothing rather than guess
                log.warning('deployment engine: who is connected is unknown (%s)', exc)
                return
            for deployment_id, rollout in list(self._active.items()):
                try:
                    for _ in range(50):  # decide until settled (bounded: one kind per step)
                        decided = rollout.decide(self._now(), online.__contains__,
                                                 teleop.__contains__)
                        if not decided:
                            break
                        await self._append(rollout, decided)
                        await self._perform(rollout, decided)
                except ConcurrencyConflict:
                    # Another process appended first (an operator's pause through it, or a
                    # deposed leader): drop our fold; the next tick reloads the stored one.
                    del self._active[deployment_id]
                    continue
                if not rollout.active:
                    del self._active[deployment_id]

    async def _append(self, rollout: Rollout, events: Sequence[ev.DomainEvent]) -> None:
        before = rollout.status
        try:
            await run_in_threadpool(self._store.append, rollout, list(events), now=self._now())
        except ConcurrencyConflict:
            log.warning('deployment %s changed under us; reloading', rollout.deployment_id)
            raise
        if rollout.status != before:  # stored: count it (a conflict above counted nothing)
            self._on_transition(rollout, before)
        self._on_change(rollout)

    def _goal_args(self, rollout: Rollout, version: str, sha: str) -> dict[str, Any]:
        assert rollout.created is not None
        return {'deployment_id': rollout.deployment_id, 'release_version': version,
                'manifest_url': f'{self._url}/api/v1/releases/{version}/manifest',
                'manifest_sha256': sha, 'health_timeout_s': rollout.created.health_timeout_s,
                'force': rollout.created.force}

    async def _perform(self, rollout: Rollout, events: Sequence[ev.DomainEvent]) -> None:
        sends = []
        for event in events:
            if isinstance(event, ev.RobotUpdateStarted):
                args = self._goal_args(rollout, rollout.release_version, rollout.manifest_sha256)
                sends.append(self._router.send_action_goal(event.robot_id, event.goal_id, args))
            elif isinstance(event, ev.RobotRollbackStarted):
                info = self._releases.get(event.to_version)
                if info is None:
                    continue  # times out as a failed rollback: the release was deleted
                args = self._goal_args(rollout, event.to_version, info.manifest_sha256)
                args['force'] = True  # undoing our own update: do not wait for teleop again
                sends.append(self._router.send_action_goal(event.robot_id, event.goal_id, args))
            elif isinstance(event, ev.DeploymentAbortRequested | ev.DeploymentRollbackStarted):
                for robot in rollout.robots.values():
                    if robot.state == 'running':
                        sends.append(self._router.cancel_action_goal(robot.robot_id,
                                                                     robot.goal_id))
        # At once: a wave's goals may each take a NATS hop to another gateway.
        for outcome in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(outcome, Exception):
                # Not sent: the robot's goal times out (robot_timeout_s) or, gone, is deferred.
                log.warning('deployment %s: a goal not sent (%s)', rollout.deployment_id,
                            outcome)

    # -- results ------------------------------------------------------------------------------
    def _on_result(self, result: ActionResult) -> None:
        asyncio.get_running_loop().create_task(self._record_result(result))

    async def _record_result(self, result: ActionResult) -> None:
        async with self._lock:
            deployment_id = result.goal_id.split(':', 1)[0]
            rollout = self._active.get(deployment_id)
            robot = rollout.robots.get(result.robot_id) if rollout else None
            if rollout is None or robot is None or robot.goal_id != result.goal_id:
                log.info('result of unknown or old goal %s from %s', result.goal_id,
                         result.robot_id)
                return
            event = self._result_event(rollout, result)
            if event is not None:
                await self._append(rollout, [event])
        self._wake.set()

    def _result_event(self, rollout: Rollout, result: ActionResult) -> ev.DomainEvent | None:
        values, now = result.values, self._now()
        robot = rollout.robots[result.robot_id]
        message = str(values.get('message', ''))
        common = {'deployment_id': rollout.deployment_id, 'at': now}
        if robot.revert == 'running':
            return ev.RobotRolledBack(result.robot_id, to_version=robot.previous_version,
                                      succeeded=result.status == GOAL_SUCCEEDED,
                                      message=message, **common)
        if robot.state != 'running':
            return None
        if result.status == GOAL_SUCCEEDED and values.get('success'):
            return ev.RobotUpdateSucceeded(
                result.robot_id, release_version=rollout.release_version,
                previous_version=str(values.get('previous_version', '')),
                transferred_bytes=int(values.get('transferred_bytes') or 0),
                full_bytes=int(values.get('full_bytes') or 0),
                duration_s=float(values.get('duration_s') or 0.0), **common)
        status = values.get('status', '')
        if status == 'refused' and ('teleoperat' in message or 'operator' in message):
            return ev.RobotUpdateDeferred(result.robot_id, reason='teleop', **common)
        if status == 'refused' and 'another deployment' in message:
            return ev.RobotUpdateDeferred(result.robot_id, reason='busy', **common)
        return ev.RobotUpdateFailed(
            result.robot_id, release_version=rollout.release_version,
            reason=message or f'goal ended with status {result.status}',
            rolled_back=bool(values.get('rolled_back')),
            final_version=str(values.get('final_version', '')), **common)
