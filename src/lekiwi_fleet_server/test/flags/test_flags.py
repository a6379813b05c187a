"""Feature flag evaluation, stable buckets, steps and guards (pure)."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.domain.flags import (
    METRICS,
    Flag,
    FlagError,
    Guard,
    Rule,
    advance,
    apply_trip,
    bucket,
    check_guards,
    evaluate,
    in_cohort,
)

ROBOTS = [f'kiwi-{i:04d}' for i in range(2000)]


def staged(step: int = 0, guards: tuple[Guard, ...] = ()) -> Flag:
    return Flag('agent.uplink', kind='variant', default='legacy',
                variants=('legacy', 'websocket', 'polling'),
                rules=(Rule('websocket', tags=('lab',), staged=True),), step=step,
                guards=guards)


def share(flag: Flag, value: object) -> float:
    return sum(evaluate(flag, r, ['lab'])[0] == value for r in ROBOTS) / len(ROBOTS) * 100


def test_buckets_are_stable_uniform_and_per_flag() -> None:
    assert bucket('a', 'kiwi-1') == bucket('a', 'kiwi-1')
    values = [bucket('a', r) for r in ROBOTS]
    assert all(0 <= v < 100 for v in values)
    assert 45 < sum(v < 50 for v in values) / len(values) * 100 < 55
    assert [bucket('a', r) < 50 for r in ROBOTS] != [bucket('b', r) < 50 for r in ROBOTS]


def test_steps_grow_the_cohort_and_nobody_leaves_it() -> None:
    flag = staged()
    cohorts = []
    for _ in range(4):
        cohorts.append({r for r in ROBOTS if in_cohort(flag, r, ['lab'])})
        if flag.step < 3:
            flag = advance(flag)
    sizes = [len(c) / len(ROBOTS) * 100 for c in cohorts]
    assert 3 < sizes[0] < 7 and 21 < sizes[1] < 29 and 45 < sizes[2] < 55 and sizes[3] == 100
    assert cohorts[0] <= cohorts[1] <= cohorts[2] <= cohorts[3]
    with pytest.raises(FlagError, match='last step'):
        advance(flag)


def test_rules_match_by_list_by_tag_or_everyone_in_order() -> None:
    flag = Flag('x', rules=(Rule(True, robots=('kiwi-1',)), Rule(False, tags=('lab',)),
                            Rule(True)))
    assert evaluate(flag, 'kiwi-1', ['lab']) == (True, 'rule 0')
    assert evaluate(flag, 'kiwi-2', ['lab']) == (False, 'rule 1')
    assert evaluate(flag, 'kiwi-2', ['field']) == (True, 'rule 2')
    assert evaluate(Flag('y'), 'kiwi-2', []) == (False, 'default')
    assert evaluate(staged(), 'kiwi-9', ['field']) == ('legacy', 'default')


def test_the_teams_rollback_strategy_as_guards() -> None:
    guards = (Guard('error_rate', 0.05, 'off'), Guard('agent_memory_mb', 75, 'step_back'),
              Guard('uplink_latency_p99_ms', 500, 'set', 'polling'))
    flag = staged(step=2, guards=guards)
    assert check_guards(flag, {'error_rate': 0.01, 'agent_memory_mb': 60}) == []
    # Memory over 75 MB: one step back (50 % → 25 %), gradually.
    (trip,) = check_guards(flag, {'agent_memory_mb': 80.0})
    back = apply_trip(flag, trip)
    assert back.percentage == 25.0 and 21 < share(back, 'websocket') < 29
    # Latency p99 over 500 ms: the cohort switches to polling, the rest is untouched.
    (slow,) = check_guards(back, {'uplink_latency_p99_ms': 900.0})
    polling = apply_trip(back, slow)
    assert share(polling, 'websocket') == 0 and 21 < share(polling, 'polling') < 29
    assert check_guards(polling, {'uplink_latency_p99_ms': 900.0}) == []  # tripped once
    # Error rate over 5 %: off at once.
    (errors,) = check_guards(polling, {'error_rate': 0.2})
    off = apply_trip(polling, errors)
    assert off.percentage == 0 and share(off, 'legacy') == 100


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'name': 'Bad Name'}, 'flag name'),
    ({'name': 'x', 'default': 'on'}, 'boolean flag'),
    ({'name': 'x', 'kind': 'variant', 'default': 'a'}, 'names its distinct variants'),
    ({'name': 'x', 'kind': 'variant', 'variants': ('a',), 'default': 'b'}, 'not among'),
    ({'name': 'x', 'steps': (50.0, 25.0)}, 'increasing'),
    ({'name': 'x', 'steps': (0.0, 100.0)}, 'increasing'),
    ({'name': 'x', 'step': 4}, 'step must be'),
])
def test_bad_definitions_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        Flag(**kwargs)  # type: ignore[arg-type]


def test_bad_guards_are_refused() -> None:
    with pytest.raises(FlagError, match='guard metric'):
        Guard('cpu', 1, 'off')
    with pytest.raises(FlagError, match='needs the value'):
        Guard('error_rate', 1, 'set')


def test_the_rest_body_takes_every_guard_metric_the_engine_measures() -> None:
    from typing import get_args

    from lekiwi_fleet_server.api.routes.flags import GuardIn
    from lekiwi_fleet_server.domain.flag_delivery import FIGURES

    assert set(get_args(GuardIn.model_fields['metric'].annotation)) == set(METRICS)
    assert set(METRICS) == {'error_rate', *FIGURES}
