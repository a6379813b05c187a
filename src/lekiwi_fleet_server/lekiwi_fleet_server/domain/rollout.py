"""The rollout state machine: waves, parallelism, gates, deferral, offline retry, rollback.

`Rollout` is the fold of one deployment's events (`apply`), and `decide` returns the next
events given the time and what the gateway knows of each robot. Pure: the engine
(deployments/engine.py) appends what `decide` returns, sends the goals those events ask for, and
turns robots' results into events. Because the state is only the fold, a server restarted in the
middle of a rollout replays the stream and carries on.

Gates (evaluated once per wave, when no robot of it is running and every robot of it has ended
or is waiting): failed / wave size >= `rollback_gate` rolls every updated robot back; succeeded /
wave size < `success_gate` pauses. Robots waiting for an operator to stop driving (`teleop`) or to
come back online (`offline`) are picked up whenever they are free, until the deadline, after
which they are skipped. A robot whose goal gets no result within `robot_timeout_s` has failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lekiwi_fleet_server.domain import events as ev

TERMINAL = frozenset({'succeeded', 'failed', 'skipped'})
ACTIVE_STATUSES = frozenset({'running', 'paused', 'rolling_back', 'aborting'})
ENDED_STATUSES = frozenset({'completed', 'rolled_back', 'aborted'})
BUSY_RETRY_S = 5.0


@dataclass(slots=True)
class RobotProgress:
    """Where one robot is in a deployment."""

    robot_id: str
    wave: int = -1  # -1 until its wave starts
    state: str = 'pending'  # pending, running, succeeded, failed, skipped
    waiting: str = ''  # '', 'teleop', 'offline', 'busy' while pending
    attempts: int = 0
    started_at: float = 0.0
    goal_id: str = ''
    previous_version: str = ''
    message: str = ''
    transferred_bytes: int = 0
    full_bytes: int = 0
    duration_s: float = 0.0
    revert: str = ''  # '', 'running', 'reverted', 'revert_failed'
    deferrals: int = 0  # times the update was deferred (teleop, offline, busy)
    deferred_at: float = 0.0


@dataclass(slots=True)
class Rollout:
    """One deployment's state, folded from its events."""

    deployment_id: str = ''
    release_version: str = ''
    manifest_sha256: str = ''
    status: str = 'new'  # running, paused, rolling_back, rolled_back, aborting, aborted, completed
    created: ev.DeploymentCreated | None = None
    robots: dict[str, RobotProgress] = field(default_factory=dict)
    waves: list[tuple[str, ...]] = field(default_factory=list)  # robots of each started wave
    gate_passed: set[int] = field(default_factory=set)  # waves whose gate was overridden/passed
    reason: str = ''
    version: int = 0  # events applied: the stream version

    # ------------------------------------------------------------------ the fold
    @classmethod
    def replay(cls, events: list[ev.DomainEvent]) -> Rollout:
        """Return the state after a stream's events."""
        rollout = cls()
        for event in events:
            rollout.apply(event)
        return rollout

    def apply(self, event: ev.DomainEvent) -> None:
        """Advance the state by one event."""
        self.version += 1
        robot = self.robots.get(event.robot_id)
        if isinstance(event, ev.DeploymentCreated):
            self.deployment_id, self.release_version = event.deployment_id, event.release_version
            self.manifest_sha256, self.created = event.manifest_sha256, event
            self.status = 'running'
            self.robots = {r: RobotProgress(r) for r in event.robots}
        elif isinstance(event, ev.WaveStarted):
            self.waves.append(event.robots)
            for r in event.robots:
                self.robots[r].wave = event.wave
        elif isinstance(event, ev.RobotUpdateStarted) and robot:
            robot.state, robot.waiting, robot.started_at = 'running', '', event.at
            robot.goal_id, robot.attempts = event.goal_id, robot.attempts + 1
        elif isinstance(event, ev.RobotUpdateDeferred) and robot:
            robot.state, robot.waiting = 'pending', event.reason
            robot.deferrals += 1
            robot.deferred_at = event.at
        elif isinstance(event, ev.RobotUpdateSucceeded) and robot:
            robot.state, robot.message = 'succeeded', 'updated'
            robot.previous_version = event.previous_version
            robot.transferred_bytes, robot.full_bytes = event.transferred_bytes, event.full_bytes
            robot.duration_s = event.duration_s
        elif isinstance(event, ev.RobotUpdateFailed) and robot:
            robot.state, robot.message = 'failed', event.reason
        elif isinstance(event, ev.RobotUpdateSkipped) and robot:
            robot.state, robot.message = 'skipped', event.reason
        elif isinstance(event, ev.RobotRollbackStarted) and robot:
            robot.revert, robot.goal_id, robot.started_at = 'running', event.goal_id, event.at
        elif isinstance(event, ev.RobotRolledBack) and robot:
            robot.revert = 'reverted' if event.succeeded else 'revert_failed'
            robot.message = event.message or robot.message
        elif isinstance(event, ev.DeploymentPaused):
            self.status, self.reason = 'paused', event.reason
        elif isinstance(event, ev.DeploymentResumed):
            self.status, self.reason = 'running', ''
            self.gate_passed.update(range(len(self.waves)))  # the operator accepts them as they are
        elif isinstance(event, ev.DeploymentRollbackStarted):
            self.status, self.reason = 'rolling_back', event.reason
        elif isinstance(event, ev.DeploymentRolledBack):
            self.status = 'rolled_back'
        elif isinstance(event, ev.DeploymentAbortRequested):
            self.status, self.reason = 'aborting', f'aborted by {event.by}'
        elif isinstance(event, ev.DeploymentAborted):
            self.status = 'aborted'
        elif isinstance(event, ev.DeploymentCompleted):
            self.status = 'completed'

    # ------------------------------------------------------------------ planning
    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def wave_plan(self) -> list[list[str]]:
        """Split the robots into the configured waves (cumulative fractions, each >= 1)."""
        assert self.created is not None
        robots = list(self.created.robots)
        plan: list[list[str]] = []
        taken = 0
        for fraction in self.created.waves:
            upto = min(len(robots), max(taken + 1, math.ceil(fraction * len(robots) - 1e-9)))
            if upto > taken:
                plan.append(robots[taken:upto])
                taken = upto
        if taken < len(robots):
            plan.append(robots[taken:])
        return plan

    def progress(self) -> dict[str, object]:
        """Return a small summary for dashboards: status and robots per state, per wave."""
        def counts(names: list[str] | tuple[str, ...]) -> dict[str, int]:
            out: dict[str, int] = {}
            for name in names:
                state = self.robots[name].state
                out[state] = out.get(state, 0) + 1
            return out
        return {'deployment_id': self.deployment_id, 'release_version': self.release_version,
                'status': self.status, 'reason': self.reason, 'robots': counts(list(self.robots)),
                'waves': [counts(w) for w in self.waves]}

    def running(self) -> list[RobotProgress]:
        """Return robots with a goal in flight (update or revert)."""
        return [r for r in self.robots.values()
                if r.state == 'running' or r.revert == 'running']

    def decide(self, now: float, online: Callable[[str], bool],
               teleop: Callable[[str], bool]) -> list[ev.DomainEvent]:
        """Return the events that should happen next (empty when there is nothing to do)."""
        if self.created is None or not self.active:
            return []
        out: list[ev.DomainEvent] = self._timeouts(now, online)
        if out:
            return out
        if self.status == 'rolling_back':
            return self._roll_back(now)
        if self.status == 'aborting':
            if not self.running():
                return [ev.DeploymentAborted('', deployment_id=self.deployment_id, at=now)]
            return []
        out = self._skip_past_deadline(now)
        if self.status == 'running' and not self.waves:
            out.append(self._wave(0, now))
            return out
        if self.status == 'running':
            out += self._start_robots(now, online, teleop)
        if out:
            return out
        return self._gate_or_advance(now)

    def _wave(self, index: int, now: float) -> ev.WaveStarted:
        return ev.WaveStarted('', deployment_id=self.deployment_id, wave=index,
                              robots=tuple(self.wave_plan()[index]), at=now)

    def _timeouts(self, now: float, online: Callable[[str], bool]) -> list[ev.DomainEvent]:
        assert self.created is not None
        limit = self.created.robot_timeout_s
        out: list[ev.DomainEvent] = []
        for r in self.robots.values():
            if r.state == 'running' and not online(r.robot_id):
                # Gone mid-deploy: its result would be lost with the connection. Ask again
                # when it is back; its executor answers a goal of the release it already runs
                # with success, and refuses (busy, retried) while the first one still runs.
                out.append(ev.RobotUpdateDeferred(r.robot_id, deployment_id=self.deployment_id,
                                                  reason='offline', at=now))
                continue
            if now - r.started_at <= limit:
                continue
            if r.state == 'running':
                out.append(ev.RobotUpdateFailed(
                    r.robot_id, deployment_id=self.deployment_id,
                    release_version=self.release_version,
                    reason=f'no result within {limit:g} s', at=now))
            elif r.revert == 'running':
                out.append(ev.RobotRolledBack(
                    r.robot_id, deployment_id=self.deployment_id, to_version=r.previous_version,
                    succeeded=False, message=f'no rollback result within {limit:g} s', at=now))
        return out

    def _skip_past_deadline(self, now: float) -> list[ev.DomainEvent]:
        assert self.created is not None
        if now - self.created.at <= self.created.deadline_s:
            return []
        return [ev.RobotUpdateSkipped(r.robot_id, deployment_id=self.deployment_id,
                                      reason=f'still {r.waiting or "waiting"} at the deadline',
                                      at=now)
                for r in self.robots.values() if r.wave >= 0 and r.state == 'pending']

    def _start_robots(self, now: float, online: Callable[[str], bool],
                      teleop: Callable[[str], bool]) -> list[ev.DomainEvent]:
        assert self.created is not None
        free = self.created.parallelism - len(self.running())
        out: list[ev.DomainEvent] = []
        for r in self.robots.values():
            if r.wave < 0 or r.state != 'pending':
                continue
            reason = ('offline' if not online(r.robot_id)
                      else 'teleop' if teleop(r.robot_id) and not self.created.force else '')
            if reason:
                if reason != r.waiting:
                    out.append(ev.RobotUpdateDeferred(r.robot_id, deployment_id=self.deployment_id,
                                                      reason=reason, at=now))
                continue
            if r.waiting == 'busy' and now - r.deferred_at < BUSY_RETRY_S:
                continue  # its executor still runs an earlier goal: ask again a little later
            if free <= 0:
                continue
            free -= 1
            out.append(ev.RobotUpdateStarted(
                r.robot_id, deployment_id=self.deployment_id, release_version=self.release_version,
                goal_id=f'{self.deployment_id}:{r.robot_id}:{r.attempts + 1}',
                attempt=r.attempts + 1, at=now))
        return out

    def _gate_or_advance(self, now: float) -> list[ev.DomainEvent]:
        assert self.created is not None
        gates = self.created.success_gate, self.created.rollback_gate
        last = len(self.waves) - 1
        last_open = False  # the last wave may still reach its gate: the next one may start
        for index, names in enumerate(self.waves):
            if index in self.gate_passed:
                continue
            wave = [self.robots[r] for r in names]
            size = len(wave)
            failed = sum(r.state == 'failed' for r in wave)
            succeeded = sum(r.state == 'succeeded' for r in wave)
            waiting = sum(r.state == 'pending' for r in wave)
            if failed / size >= gates[1]:
                return [ev.DeploymentRollbackStarted(
                    '', deployment_id=self.deployment_id, at=now,
                    reason=f'wave {index + 1}: {failed}/{size} failed '
                           f'(rollback gate {gates[1]:.0%})')]
            # Unsettled while a robot of it runs or could start (a free slot will come).
            if any(r.state == 'running' or (r.state == 'pending' and not r.waiting)
                   for r in wave):
                last_open = index == last
                continue
            if (succeeded + waiting) / size < gates[0] or (not waiting and succeeded / size
                                                            < gates[0]):
                return self._pause(now, f'wave {index + 1}: {succeeded}/{size} updated '
                                        f'(gate {gates[0]:.0%})')
            if not waiting:
                self.gate_passed.add(index)  # settled and passed: never evaluated again
        if last_open:
            return []
        if last + 1 < len(self.wave_plan()):
            return [self._wave(last + 1, now)]
        if all(r.state in TERMINAL for r in self.robots.values()):
            counts = {s: sum(r.state == s for r in self.robots.values()) for s in TERMINAL}
            return [ev.DeploymentCompleted('', deployment_id=self.deployment_id,
                                           succeeded=counts['succeeded'], failed=counts['failed'],
                                           skipped=counts['skipped'], at=now)]
        return []

    def _pause(self, now: float, reason: str) -> list[ev.DomainEvent]:
        return [ev.DeploymentPaused('', deployment_id=self.deployment_id, reason=reason, at=now)]

    def _roll_back(self, now: float) -> list[ev.DomainEvent]:
        assert self.created is not None
        free = self.created.parallelism - len(self.running())
        out: list[ev.DomainEvent] = []
        for r in self.robots.values():
            if r.state == 'succeeded' and r.revert == '' and r.previous_version and free > 0:
                free -= 1
                out.append(ev.RobotRollbackStarted(
                    r.robot_id, deployment_id=self.deployment_id, to_version=r.previous_version,
                    goal_id=f'{self.deployment_id}:{r.robot_id}:revert', at=now))
        if out or self.running():
            return out
        if any(r.state == 'succeeded' and r.revert == '' and r.previous_version
               for r in self.robots.values()):
            return []
        return [ev.DeploymentRolledBack('', deployment_id=self.deployment_id, at=now)]
