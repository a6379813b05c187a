"""A flag stream's fold, the migration plan's gate, cohort metrics and the configure payload."""

from __future__ import annotations

import pytest

from lekiwi_fleet_server.domain import flag_events as fe
from lekiwi_fleet_server.domain.flag_delivery import (
    RobotView,
    cohort_metrics,
    configure_payload,
    own_metric,
    percentile,
)
from lekiwi_fleet_server.domain.flags import Flag, FlagError, Guard, Rule, check_guards

FLAG = Flag('agent_uplink', rules=(Rule(True, tags=('lab',), staged=True),),
            guards=(Guard('agent_memory_mb', 75.0, 'step_back'),),
            parameters=('fleet_uplink:use_agent',))


def stream(*events: object) -> fe.FlagState:
    state = fe.FlagState.replay((e, 'olga') for e in events)  # type: ignore[misc]
    assert state is not None
    return state


def created(at: float = 0.0, step: int = 0) -> fe.FlagCreated:
    return fe.FlagCreated('', flag=FLAG.name, definition=fe.flag_to_dict(FLAG), step=step, at=at)


def test_the_definition_survives_its_round_trip() -> None:
    again = fe.flag_from_dict(fe.flag_to_dict(FLAG))
    assert again == FLAG
    with pytest.raises(FlagError):
        fe.flag_from_dict({'kind': 'boolean'})
    with pytest.raises(FlagError):
        fe.flag_from_dict({**fe.flag_to_dict(FLAG), 'parameters': ['no-colon']})


def test_the_fold_follows_steps_trips_plans_and_deletion() -> None:
    state = stream(created(at=1.0),
                   fe.FlagStepAdvanced('', flag=FLAG.name, step=2, percentage=50.0, at=5.0),
                   fe.FlagPlanSet('', flag=FLAG.name, soak_s=60.0, min_applied=0.9, at=6.0),
                   fe.FlagGuardTripped('', flag=FLAG.name, guard=0, metric='agent_memory_mb',
                                       action='step_back', step=1, at=7.0))
    assert state.flag.step == 1 and state.step_since == 7.0 and state.version == 4
    assert state.plan is not None and state.plan.paused and 'agent_memory_mb' in \
        state.plan.reason  # a trip stops the migration until an operator resumes it
    resumed = fe.fold(state, fe.FlagPlanResumed('', flag=FLAG.name, at=9.0), 'olga')
    assert resumed.plan is not None and not resumed.plan.paused and resumed.step_since == 9.0
    deleted = fe.fold(resumed, fe.FlagDeleted('', flag=FLAG.name, at=10.0), 'admin')
    assert deleted.deleted and deleted.updated_by == 'admin' and deleted.created_by == 'olga'
    again = fe.fold(deleted, created(at=11.0), 'pat')  # a name is usable again after delete
    assert again.version == 7 and not again.deleted and again.created_by == 'pat'
    with pytest.raises(FlagError):
        fe.fold(again, created(), 'pat')
    with pytest.raises(FlagError):
        fe.fold(None, fe.FlagDeleted('', flag='x'), 'pat')


def test_a_set_guard_gives_the_cohort_its_value_until_the_definition_changes() -> None:
    flag = Flag('uplink_transport', kind='variant', default='websocket',
                variants=('websocket', 'polling'),
                rules=(Rule('websocket', staged=True),),
                guards=(Guard('uplink_latency_p99_ms', 500.0, 'set', 'polling'),), step=3)
    created_ = fe.FlagCreated('', flag=flag.name, definition=fe.flag_to_dict(flag), step=3)
    tripped = stream(created_, fe.FlagGuardTripped('', flag=flag.name, guard=0, action='set',
                                                   value='polling', step=3))
    assert configure_payload([tripped.flag], 'r1', ())['flags'] == {'uplink_transport':
                                                                    'polling'}
    assert check_guards(tripped.flag, {'uplink_latency_p99_ms': 900.0}) == []  # once
    reset = fe.fold(tripped, fe.FlagDefinitionChanged('', flag=flag.name,
                                                      definition=fe.flag_to_dict(flag)), 'o')
    assert reset.flag.tripped == {} and reset.flag.step == 3


def test_the_plan_advances_only_when_its_gate_held_for_the_soak_time() -> None:
    state = stream(created(at=0.0), fe.FlagPlanSet('', flag=FLAG.name, soak_s=60.0,
                                                   min_applied=0.8, at=0.0))
    assert fe.plan_may_advance(state, 59.0, cohort=10, applied=10) is None  # soaking
    assert fe.plan_may_advance(state, 61.0, cohort=10, applied=7) is None  # too few applied
    assert fe.plan_may_advance(state, 61.0, cohort=10, applied=8) is not None
    assert fe.plan_may_advance(state, 61.0, cohort=0, applied=0) is not None  # nobody failed
    paused = fe.fold(state, fe.FlagPlanPaused('', flag=FLAG.name, reason='x'), 'o')
    assert fe.plan_may_advance(paused, 1e9, cohort=1, applied=1) is None
    last = fe.fold(state, fe.FlagStepAdvanced('', flag=FLAG.name, step=3, at=0.0), 'o')
    assert fe.plan_may_advance(last, 1e9, cohort=1, applied=1) is None  # at 100 % already
    assert fe.plan_may_advance(stream(created()), 1e9, cohort=1, applied=1) is None  # no plan


def test_cohort_metrics_follow_the_teams_rules() -> None:
    robots = [RobotView(f'r{i}', state='error' if i < 1 else 'idle',
                        measures={'agent_rss_mb': 50.0 + i, 'agent_uss_mb': 30.0 + i,
                                  'uplink_ack_p99_ms': 100.0 + i})
              for i in range(20)]
    metrics = cohort_metrics(robots)
    assert metrics['error_rate'] == pytest.approx(0.05)  # 1 of 20: not over 5 %
    assert metrics['agent_memory_mb'] == pytest.approx(67.0)  # the 90th percentile: r17
    assert metrics['agent_uss_mb'] == pytest.approx(47.0)  # the same robot's USS
    assert own_metric(robots[3], 'agent_uss_mb') == 33.0
    assert own_metric(RobotView('old-agent'), 'agent_uss_mb') is None
    assert metrics['uplink_latency_p99_ms'] == 119.0
    assert cohort_metrics([RobotView('r', measures={'agent_rss_mb': True})]) == {}
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    rules = (Guard('error_rate', 0.05, 'off'), Guard('agent_memory_mb', 75.0, 'step_back'),
             Guard('uplink_latency_p99_ms', 500.0, 'set', 'polling'))
    flag = Flag('f', kind='variant', default='websocket', variants=('websocket', 'polling'),
                rules=(Rule('websocket', staged=True),), guards=rules)
    assert check_guards(flag, metrics) == []
    two_errors = cohort_metrics([*robots[1:], RobotView('x', state='error'),
                                 RobotView('y', state='error')])
    assert [t.guard.action for t in check_guards(flag, two_errors)] == ['off']


def test_the_payload_lists_every_flag_and_its_targets_and_its_revision_is_stable() -> None:
    other = Flag('quiet', default=True)
    first = configure_payload([FLAG, other], 'r1', ('lab',))
    assert set(first['flags']) == {'agent_uplink', 'quiet'}
    assert [p['node'] + ':' + p['name'] for p in first['parameters']] == [
        'fleet_uplink:use_agent']
    assert configure_payload([other, FLAG], 'r1', ('lab',)) == first  # order does not matter
    changed = configure_payload([FLAG, Flag('quiet', default=False)], 'r1', ('lab',))
    assert changed['revision'] != first['revision']
