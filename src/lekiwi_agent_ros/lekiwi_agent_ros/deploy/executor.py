"""The deploy executor's state machine: phases, rollback and a durable state file.

Phases run in order: download, verify, stage, pre_check, switch, post_check, commit. Before a
phase starts, the state file says so (written to a temporary file, fsynced, renamed, directory
fsynced), so a process killed anywhere finds on restart which phase it was in:
- before `switch` the running release was never touched: the staged tree is discarded;
- in `switch`, `post_check` or `rollback` the new release may be half running: roll back;
- in `commit` the new release passed its checks: the commit is finished.
A half-switched release is therefore never left running. The work of each phase is done by a
`DeploySteps` object (the robot's real one in `robot_steps.py`, fakes in the unit tests).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

PHASES: tuple[str, ...] = (
    'download', 'verify', 'stage', 'pre_check', 'switch', 'post_check', 'commit')
# Phases in which the new release may be running: a fault there needs a rollback.
SWITCHED: frozenset[str] = frozenset({'switch', 'post_check', 'rollback'})


class StepFailed(Exception):
    """A phase failed; the message says why."""


class Refused(StepFailed):
    """The robot refuses the goal (e.g. someone is driving, battery low)."""


class Cancelled(Exception):
    """The goal was cancelled."""


@dataclass(frozen=True, slots=True)
class Goal:
    """What to install; mirrors the Deploy action goal."""

    deployment_id: str
    release_version: str
    manifest_url: str
    manifest_sha256: str
    health_timeout_s: float = 60.0
    force: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a goal ended; mirrors the Deploy action result."""

    status: str  # 'succeeded', 'failed', 'rolled_back', 'refused', 'canceled'
    final_version: str
    message: str
    transferred_bytes: int = 0
    full_bytes: int = 0

    @property
    def success(self) -> bool:
        return self.status == 'succeeded'

    @property
    def rolled_back(self) -> bool:
        return self.status == 'rolled_back'


@dataclass(frozen=True, slots=True)
class State:
    """The executor's durable state."""

    current: str = ''  # committed release version
    goal: dict[str, Any] | None = None
    phase: str = 'idle'
    last: dict[str, Any] | None = field(default=None)  # the last Outcome, as a dict


class StateFile:
    """Atomic, fsynced JSON state on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> State:
        """Return the stored state (a fresh one when there is none)."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return State()
        return State(raw.get('current', ''), raw.get('goal'), raw.get('phase', 'idle'),
                     raw.get('last'))

    def save(self, state: State) -> None:
        """Replace the stored state in one step that survives a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + '.tmp')
        with open(tmp, 'w') as f:
            json.dump(asdict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DeploySteps(Protocol):
    """The work behind each phase; every method raises StepFailed (or Refused) to fail."""

    def download(self, goal: Goal, cancelled: Callable[[], bool]) -> tuple[int, int]:
        """Fetch what the current release lacks; return (transferred, full) bytes."""

    def verify(self, goal: Goal) -> None: ...

    def stage(self, goal: Goal) -> None: ...

    def pre_check(self, goal: Goal, cancelled: Callable[[], bool]) -> None: ...

    def switch(self, version: str) -> None:
        """Point `current` at `version` and (re)start its application."""

    def post_check(self, version: str, timeout_s: float, cancelled: Callable[[], bool]) -> None: ...

    def discard(self, version: str) -> None:
        """Remove a staged release that never became current."""

    def ensure_running(self, version: str) -> None:
        """Start the application of `version` unless it already runs."""


Feedback = Callable[[str, float, str], None]  # phase, progress 0..1, message


class DeployExecutor:
    """Run deploy goals through the phases, rolling back on any failure, durably."""

    def __init__(self, steps: DeploySteps, state_file: StateFile) -> None:
        self._steps = steps
        self._file = state_file
        self._state = state_file.load()

    @property
    def state(self) -> State:
        return self._state

    @property
    def current(self) -> str:
        return self._state.current

    def _save(self, **changes: Any) -> None:
        self._state = replace(self._state, **changes)
        self._file.save(self._state)

    def recover(self) -> Outcome | None:
        """Finish or undo a goal a previous process left in flight; start the current app."""
        phase, goal = self._state.phase, self._state.goal
        outcome: Outcome | None = None
        if goal is not None and phase != 'idle':
            version = goal['release_version']
            if phase == 'commit':
                self._save(current=version)
                outcome = Outcome('succeeded', version, 'commit finished after a restart')
            elif phase in SWITCHED:
                outcome = self._rollback(Goal(**goal), f'interrupted in {phase}', lambda: False)
            else:
                self._steps.discard(version)
                outcome = Outcome('failed', self.current, f'interrupted in {phase}')
            self._save(goal=None, phase='idle', last=asdict(outcome))
        if self.current:
            try:
                self._steps.ensure_running(self.current)
            except StepFailed:
                pass  # reported by health monitoring; the state is consistent either way
        return outcome

    def run(self, goal: Goal, feedback: Feedback,
            cancelled: Callable[[], bool] = lambda: False) -> Outcome:
        """Install `goal`'s release; return how it ended (never raises StepFailed)."""
        if self._state.goal is not None:
            return Outcome('refused', self.current, 'another deployment is in progress')
        if goal.release_version == self.current:
            outcome = Outcome('succeeded', self.current, 'already running this release')
            self._save(last=asdict(outcome))
            return outcome
        self._save(goal=asdict(goal), phase='download')
        transferred = full = 0
        phase = 'download'  # the last phase entered: what a fault has to undo
        try:
            for index, step in enumerate(PHASES):
                if cancelled():
                    raise Cancelled(f'cancelled before {step}')
                phase = step
                self._save(phase=phase)
                feedback(phase, index / len(PHASES), phase.replace('_', '-'))
                if phase == 'download':
                    transferred, full = self._steps.download(goal, cancelled)
                elif phase == 'verify':
                    self._steps.verify(goal)
                elif phase == 'stage':
                    self._steps.stage(goal)
                elif phase == 'pre_check':  # goal.force lifts only its teleop lock
                    self._steps.pre_check(goal, cancelled)
                elif phase == 'switch':
                    self._steps.switch(goal.release_version)
                elif phase == 'post_check':
                    self._steps.post_check(goal.release_version, goal.health_timeout_s, cancelled)
                else:
                    self._save(current=goal.release_version)
            outcome = Outcome('succeeded', goal.release_version, 'healthy', transferred, full)
        except (StepFailed, Cancelled, OSError) as exc:
            outcome = self._fail(goal, phase, exc, feedback)
            outcome = replace(outcome, transferred_bytes=transferred, full_bytes=full)
        self._save(goal=None, phase='idle', last=asdict(outcome))
        feedback('done', 1.0, outcome.message)
        return outcome

    def _fail(self, goal: Goal, phase: str, exc: BaseException, feedback: Feedback) -> Outcome:
        reason = f'{phase}: {exc}'
        if phase in SWITCHED:
            feedback('rollback', 1.0, f'rolling back ({reason})')
            return self._rollback(goal, reason, lambda: False)
        self._steps.discard(goal.release_version)
        if isinstance(exc, Cancelled):
            return Outcome('canceled', self.current, reason)
        if isinstance(exc, Refused):
            return Outcome('refused', self.current, reason)
        return Outcome('failed', self.current, reason)

    def _rollback(self, goal: Goal, reason: str, cancelled: Callable[[], bool]) -> Outcome:
        self._save(phase='rollback')
        previous = self.current
        if not previous:
            # Nothing to go back to: stop the new release rather than leave it half checked.
            self._steps.discard(goal.release_version)
            return Outcome('failed', '', f'{reason}; no previous release to roll back to')
        try:
            self._steps.switch(previous)
            self._steps.post_check(previous, goal.health_timeout_s, cancelled)
        except (StepFailed, OSError) as exc:
            return Outcome('failed', previous,
                           f'{reason}; rollback to {previous} unhealthy: {exc}')
        self._steps.discard(goal.release_version)
        return Outcome('rolled_back', previous, f'{reason}; rolled back to {previous}')
