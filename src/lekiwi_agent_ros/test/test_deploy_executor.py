"""The executor state machine: every phase x fault, cancel, and recovery after a kill."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lekiwi_agent_ros.deploy.executor import (
    PHASES,
    DeployExecutor,
    Goal,
    Refused,
    StateFile,
    StepFailed,
)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in this process."""


class FakeSteps:
    """Records calls; fails (or is 'killed') in a chosen phase, for a chosen version."""

    def __init__(self, fail: str | None = None, fail_version: str = '2',
                 kill: str | None = None, refuse: bool = False) -> None:
        self.fail, self.fail_version, self.kill, self.refuse = fail, fail_version, kill, refuse
        self.calls: list[tuple[str, str]] = []
        self.running: str | None = None
        self.cancel_in: str | None = None
        self.cancel_flag = False

    def _do(self, phase: str, version: str) -> None:
        self.calls.append((phase, version))
        if self.cancel_in == phase:
            self.cancel_flag = True
        if self.kill == phase and version == self.fail_version:
            raise Killed(phase)
        if self.fail == phase and version == self.fail_version:
            raise (Refused if self.refuse else StepFailed)(f'{phase} broke')

    def download(self, goal: Goal, cancelled: Callable[[], bool]) -> tuple[int, int]:
        self._do('download', goal.release_version)
        return 5, 100

    def verify(self, goal: Goal) -> None:
        self._do('verify', goal.release_version)

    def stage(self, goal: Goal) -> None:
        self._do('stage', goal.release_version)

    def pre_check(self, goal: Goal, cancelled: Callable[[], bool]) -> None:
        if goal.force and self.refuse:  # a forced goal lifts the teleop lock
            self.calls.append(('pre_check forced', goal.release_version))
            return
        self._do('pre_check', goal.release_version)

    def switch(self, version: str) -> None:
        self.running = version
        self._do('switch', version)

    def post_check(self, version: str, timeout_s: float, cancelled: Callable[[], bool]) -> None:
        assert self.running == version
        self._do('post_check', version)

    def discard(self, version: str) -> None:
        self.calls.append(('discard', version))

    def ensure_running(self, version: str) -> None:
        self.calls.append(('ensure_running', version))
        self.running = version


def goal(version: str = '2', force: bool = False) -> Goal:
    return Goal('dep-1', version, 'http://x/manifest', 'ab' * 32, 5.0, force)


def executor_at_1(tmp_path: Path, steps: FakeSteps) -> DeployExecutor:
    executor = DeployExecutor(steps, StateFile(tmp_path / 'state.json'))
    assert executor.run(goal('1'), lambda *a: None).success
    steps.calls.clear()
    return executor


def test_a_good_release_goes_through_every_phase_and_is_committed(tmp_path: Path) -> None:
    steps = FakeSteps()
    executor = executor_at_1(tmp_path, steps)
    seen: list[str] = []
    outcome = executor.run(goal(), lambda phase, p, m: seen.append(phase))
    assert outcome.success and outcome.final_version == '2'
    assert (outcome.transferred_bytes, outcome.full_bytes) == (5, 100)
    assert seen == [*PHASES, 'done']
    assert StateFile(tmp_path / 'state.json').load().current == '2'


@pytest.mark.parametrize('phase', ['download', 'verify', 'stage', 'pre_check'])
def test_a_fault_before_switch_discards_the_staged_tree_and_keeps_the_old(
        tmp_path: Path, phase: str) -> None:
    steps = FakeSteps(fail=phase)
    executor = executor_at_1(tmp_path, steps)
    outcome = executor.run(goal(), lambda *a: None)
    assert outcome.status == 'failed' and outcome.final_version == '1'
    assert f'{phase}: {phase} broke' in outcome.message
    assert ('discard', '2') in steps.calls and not any(c[0] == 'switch' for c in steps.calls)
    assert executor.current == '1' and executor.state.goal is None


@pytest.mark.parametrize('phase', ['switch', 'post_check'])
def test_a_fault_after_switch_rolls_back_to_the_old_release_and_checks_it(
        tmp_path: Path, phase: str) -> None:
    steps = FakeSteps(fail=phase)
    executor = executor_at_1(tmp_path, steps)
    outcome = executor.run(goal(), lambda *a: None)
    assert outcome.rolled_back and outcome.final_version == '1'
    assert steps.calls[-3:] == [('switch', '1'), ('post_check', '1'), ('discard', '2')]
    assert steps.running == '1' and executor.current == '1'


def test_an_unhealthy_rollback_is_reported_as_failed(tmp_path: Path) -> None:
    steps = FakeSteps(fail='post_check')
    executor = executor_at_1(tmp_path, steps)
    steps.fail_version = '*'  # nothing matches: make both versions fail below
    steps.post_check = lambda v, t, c: (_ for _ in ()).throw(StepFailed('dead'))  # type: ignore
    outcome = executor.run(goal(), lambda *a: None)
    assert outcome.status == 'failed' and 'rollback to 1 unhealthy' in outcome.message


def test_teleop_refusal_is_a_refusal_and_force_skips_the_pre_check(tmp_path: Path) -> None:
    steps = FakeSteps(fail='pre_check', refuse=True)
    executor = executor_at_1(tmp_path, steps)
    refused = executor.run(goal(), lambda *a: None)
    assert refused.status == 'refused' and 'pre_check' in refused.message
    steps.calls.clear()
    forced = executor.run(goal(force=True), lambda *a: None)
    assert forced.success and ('pre_check forced', '2') in steps.calls


@pytest.mark.parametrize('phase', PHASES[:-1])
def test_cancel_in_any_phase_leaves_the_old_release_running(tmp_path: Path, phase: str) -> None:
    steps = FakeSteps()
    executor = executor_at_1(tmp_path, steps)
    steps.cancel_in = phase
    outcome = executor.run(goal(), lambda *a: None, cancelled=lambda: steps.cancel_flag)
    assert executor.current == '1' and steps.running in (None, '1')
    assert outcome.status == ('rolled_back' if phase in ('switch', 'post_check') else 'canceled')


@pytest.mark.parametrize('phase', PHASES)
def test_killed_in_any_phase_a_restart_ends_with_one_healthy_release(
        tmp_path: Path, phase: str) -> None:
    steps = FakeSteps(kill=phase)
    executor = executor_at_1(tmp_path, steps)
    if phase == 'commit':
        # commit has no step of its own: kill right after the state says 'commit'
        state = StateFile(tmp_path / 'state.json')
        original = state.save

        def save_then_die(s):  # type: ignore[no-untyped-def]
            original(s)
            if s.phase == 'commit':
                raise Killed('commit')
        executor = DeployExecutor(steps, state)
        state.save = save_then_die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        executor.run(goal(), lambda *a: None)
    restarted_steps = FakeSteps()
    restarted = DeployExecutor(restarted_steps, StateFile(tmp_path / 'state.json'))
    outcome = restarted.recover()
    assert outcome is not None and restarted.state.goal is None
    expected = '2' if phase == 'commit' else '1'
    assert restarted.current == expected and restarted_steps.running == expected
    if phase in ('switch', 'post_check'):
        assert outcome.rolled_back
        assert ('switch', '1') in restarted_steps.calls
    assert StateFile(tmp_path / 'state.json').load().last is not None


def test_a_second_goal_while_one_runs_is_refused(tmp_path: Path) -> None:
    steps = FakeSteps()
    executor = executor_at_1(tmp_path, steps)
    inner: list[str] = []

    def feedback(phase: str, p: float, m: str) -> None:
        if phase == 'stage':
            inner.append(executor.run(goal('3'), lambda *a: None).status)
    assert executor.run(goal(), feedback).success
    assert inner == ['refused']


def test_the_same_version_again_is_a_no_op_success(tmp_path: Path) -> None:
    steps = FakeSteps()
    executor = executor_at_1(tmp_path, steps)
    assert executor.run(goal('1'), lambda *a: None).success and steps.calls == []
