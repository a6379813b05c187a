"""The per-robot aggregate and its decisions (pure: no database)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.robot_state import (
    AlarmThresholds,
    CurrentState,
    InvalidRobotMessage,
    RobotAggregate,
    RobotState,
    alarms_quiet,
    evaluate_alarms,
    is_newer,
    robot_status,
)

T = AlarmThresholds()
BOOT = 'boot0001'


def header(t: float) -> dict[str, Any]:
    return {'stamp': {'sec': int(t), 'nanosec': 0}, 'frame_id': ''}


def hb(t: float = 100.0, **kw: Any) -> dict[str, Any]:
    msg = {'header': header(t), 'agent_version': '0.1.0', 'software_version': '1.0.0',
           'sequence': 1, 'state': 2, 'teleop_active': False, 'teleop_score': 0.0,
           'resources': {'battery_percent': 80.0, 'temperature_c': 40.0}}
    msg.update(kw)
    return msg


def enrolled(robot_id: str = 'r') -> RobotState:
    return RobotState(RobotAggregate(robot_id)).on_enrol(('lab',), 1.0).state


def fleet_event(event_type: str, payload: Any, **kw: Any) -> dict[str, Any]:
    msg = {'header': header(50.0), 'sequence': 3, 'severity': 1, 'event_type': event_type,
           'payload_json': payload if isinstance(payload, str) else json.dumps(payload)}
    msg.update(kw)
    return msg


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match='battery'):
        AlarmThresholds(battery_low_percent=30, battery_clear_percent=20)
    with pytest.raises(ValueError, match='temperature'):
        AlarmThresholds(temperature_high_c=70, temperature_clear_c=75)
    with pytest.raises(ValueError, match='disk'):
        AlarmThresholds(disk_full_fraction=0.8, disk_clear_fraction=0.9)


@pytest.mark.parametrize('online, presence_at, heartbeat_at, expected', [
    (False, None, None, 'never_seen'),
    (False, 10.0, None, 'offline'),
    (False, None, 10.0, 'offline'),
    (True, 96.0, None, 'online'),  # came online, no heartbeat yet, recently
    (True, 10.0, 99.0, 'online'),
    (True, 99.0, 10.0, 'online'),  # reconnected lately: presence counts as a sign of life
    (True, 10.0, 50.0, 'stale'),
    (True, 90.0, None, 'stale'),
    (True, None, None, 'stale'),
])
def test_robot_status(online: bool, presence_at: float | None, heartbeat_at: float | None,
                      expected: str) -> None:
    assert robot_status(online, presence_at, heartbeat_at, now=100.0,
                        stale_after_s=5.0) == expected


def test_is_newer() -> None:
    assert is_newer('b1', 1, 0.0, None, 0, 0.0)
    assert is_newer('b1', 5, 1.0, 'b1', 4, 9.0)
    assert not is_newer('b1', 4, 9.0, 'b1', 4, 1.0)
    assert is_newer('b2', 1, 10.0, 'b1', 99, 5.0)  # a later boot by the robot clock
    assert not is_newer('b0', 99, 4.0, 'b1', 1, 5.0)
    assert is_newer('b0', 1, 0.0, 'b1', 1, 5.0)  # no stamp: cannot order, take it


def test_aggregate_applies_every_event_and_snapshots() -> None:
    agg = RobotAggregate('r')
    for event in [
        ev.RobotEnrolled('r', tags=('a',), enrolled_at=1.0),
        ev.RobotCameOnline('r', at=2.0, reason='connected'),
        ev.RobotVersionChanged('r', agent_version='0.1', software_version='1.0'),
        ev.ResourceAlarmRaised('r', alarm='battery_low', value=9.0),
        ev.ResourceAlarmRaised('r', alarm='disk_full', value=0.99),
        ev.ResourceAlarmCleared('r', alarm='battery_low', value=50.0),
        ev.TeleopSessionStarted('r', session_id='s1', started_at=3.0),
        ev.TeleopSessionEnded('r', session_id='other', started_at=0.0),  # not the open one
        ev.DeploymentStatusReported('r', at=4.0, deployment_id='d', release_version='1.1',
                                    phase='installing', progress=0.3),
        ev.RobotEventReported('r', event_type='x'),
        ev.RobotTokenRevoked('r', revoked_at=5.0),
    ]:
        agg = agg.apply(event)
    assert agg.version == 11 and agg.enrolled and agg.revoked and agg.online
    assert agg.tags == ('a',) and agg.alarms == {'disk_full': 0.99}
    assert agg.session_id == 's1' and agg.session_started_at == 3.0
    assert agg.last_deployment['phase'] == 'installing'
    assert RobotAggregate.from_snapshot(json.loads(json.dumps(agg.to_snapshot()))) == agg
    agg = agg.apply(ev.TeleopSessionEnded('r', session_id='s1'))
    agg = agg.apply(ev.RobotWentOffline('r', at=9.0, reason='timeout'))
    assert agg.session_id is None and not agg.online and agg.presence_reason == 'timeout'


def test_enrol_revoke_presence() -> None:
    state = enrolled()
    assert state.aggregate.enrolled and state.aggregate.version == 1
    revoked = state.on_revoke(2.0)
    assert [e.TYPE for e in revoked.events] == ['RobotTokenRevoked']
    assert not revoked.state.on_revoke(3.0).stored
    up = state.on_presence(True, 5.0, 'connected')
    assert [e.TYPE for e in up.events] == ['RobotCameOnline']
    assert not up.state.on_presence(True, 6.0, 'connected').stored
    down = up.state.on_presence(False, 7.0, 'timeout')
    assert down.events == (ev.RobotWentOffline('r', at=7.0, reason='timeout'),)


def test_heartbeat_changes_state_and_versions() -> None:
    first = enrolled().on_heartbeat(BOOT, 1, hb(), 100.5, T)
    assert [e.TYPE for e in first.events] == ['RobotVersionChanged']
    cur = first.state.current
    assert (cur.last_heartbeat_at, cur.heartbeat_seq, cur.boot_id, cur.last_seq) == (
        100.5, 1, BOOT, 1)
    assert cur.state == 'idle' and cur.resources['battery_percent'] == 80.0
    same = first.state.on_heartbeat(BOOT, 2, hb(101.0, state=9), 101.5, T)
    assert same.events == () and same.state.current.state == 'unknown'
    upgraded = same.state.on_heartbeat(BOOT, 3, hb(102.0, software_version='1.1.0'), 102.5, T)
    (change,) = upgraded.events
    assert change.previous_software_version == '1.0.0' and change.software_version == '1.1.0'
    duplicate = upgraded.state.on_heartbeat(BOOT, 3, hb(102.0), 103.0, T)
    assert not duplicate.stored and duplicate.state is upgraded.state
    blank = enrolled().on_heartbeat(BOOT, 1, hb(agent_version='', software_version=''), 1.0, T)
    assert blank.events == ()


def test_heartbeat_from_a_new_boot_moves_the_boot() -> None:
    state = enrolled().on_heartbeat(BOOT, 50, hb(100.0), 100.0, T).state
    state = state.on_teleop_status(BOOT, 51, {'header': header(100.0), 'active': True,
                                              'score': 0.9}, 100.0).state
    assert state.current.last_seq == 51
    restarted = state.on_heartbeat('boot0002', 1, hb(200.0), 200.0, T).state
    assert (restarted.current.boot_id, restarted.current.last_seq) == ('boot0002', 1)
    assert restarted.current.teleop_boot_id == BOOT  # teleop status stays as reported


@pytest.mark.parametrize('change, message', [
    ({'state': 'idle'}, 'state'), ({'state': 256}, 'state'),
    ({'resources': [1, 2]}, 'resources'), ({'resources': {'cpu': 'high'}}, 'cpu'),
    ({'resources': {'x' * 65: 1.0}}, 'names'),
    ({'resources': {f'f{i}': 1.0 for i in range(65)}}, 'at most 64'),
    ({'teleop_active': 1}, 'teleop_active'), ({'teleop_score': '0.5'}, 'teleop_score'),
    ({'agent_version': 1}, 'agent_version'), ({'sequence': -1}, 'sequence'),
])
def test_bad_heartbeats_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRobotMessage, match=message):
        enrolled().on_heartbeat(BOOT, 1, hb(**change), 1.0, T)


def test_heartbeat_nulls_and_nan() -> None:
    state = enrolled().on_heartbeat(
        BOOT, 1, hb(teleop_score=None, resources={'cpu_percent': float('nan'), 'disk': None,
                                                  'mem': 5}), 1.0, T).state
    assert state.current.teleop_score == 0.0
    assert state.current.resources == {'cpu_percent': None, 'disk': None, 'mem': 5}


def test_teleop_status() -> None:
    status = {'header': header(10.0), 'active': True, 'score': 0.75, 'joystick_signal': 1.0,
              'webrtc_peers': 1, 'control_latency_ms': None}
    state = enrolled().on_teleop_status(BOOT, 5, status, 10.0).state
    cur = state.current
    assert cur.teleop_active and cur.teleop_score == 0.75
    assert cur.teleop == {'joystick_signal': 1.0, 'webrtc_peers': 1, 'control_latency_ms': None}
    assert not state.on_teleop_status(BOOT, 4, {**status, 'active': False}, 11.0).stored
    with pytest.raises(InvalidRobotMessage, match='active'):
        state.on_teleop_status(BOOT, 6, {**status, 'active': 'yes'}, 11.0)


def telemetry_msg(sequence: int, base: int, values: dict[str, Any], *, full: bool = False,
                  boot: str = BOOT, t: float = 100.0) -> dict[str, Any]:
    return {'header': header(t), 'boot_id': boot, 'sequence': sequence, 'base_sequence': base,
            'full_snapshot': full, 'field_names': list(values),
            'field_values': list(values.values())}


def test_telemetry_reconstructs_raises_alarms_and_skips_redelivery() -> None:
    state = enrolled()
    out = state.on_telemetry(BOOT, 1, telemetry_msg(1, 1, {'battery_percent': 50.0}, full=True),
                             100.0, T)
    assert out.telemetry.complete and out.telemetry.values == {'battery_percent': 50.0}
    out = out.state.on_telemetry(BOOT, 2, telemetry_msg(2, 1, {'battery_percent': 10.0}),
                                 101.0, T)
    assert [e.alarm for e in out.events] == ['battery_low']
    assert out.state.current.telemetry.values == {'battery_percent': 10.0}
    again = out.state.on_telemetry(BOOT, 2, telemetry_msg(2, 1, {'battery_percent': 10.0}),
                                   102.0, T)
    assert not again.stored and again.telemetry is None
    with pytest.raises(InvalidRobotMessage):
        out.state.on_telemetry(BOOT, 3, {**telemetry_msg(3, 1, {}), 'field_values': [1.0]},
                               103.0, T)


def test_telemetry_of_an_earlier_boot_is_history_only() -> None:
    state = enrolled().on_telemetry('boot0002', 1, telemetry_msg(
        1, 1, {'cpu_percent': 5.0}, full=True, boot='boot0002', t=200.0), 200.0, T).state
    late = state.on_telemetry(BOOT, 99, telemetry_msg(40, 30, {'cpu_percent': 99.0}, t=150.0),
                              201.0, T)
    assert late.stored and late.telemetry.values == {'cpu_percent': 99.0}
    assert not late.telemetry.complete
    assert late.state.current.telemetry == state.current.telemetry


def test_alarms_hysteresis_and_disk() -> None:
    raised = evaluate_alarms('r', {}, {'disk_used_bytes': 96, 'disk_total_bytes': 100,
                                       'temperature_c': 81.0}, 1.0, T)
    assert sorted(e.alarm for e in raised) == ['disk_full', 'temperature_high']
    active = {'disk_full': 0.96, 'temperature_high': 81.0}
    # Between the clear and the raise thresholds: nothing changes either way.
    assert evaluate_alarms('r', active, {'disk_used_bytes': 92, 'disk_total_bytes': 100,
                                         'temperature_c': 77.0}, 2.0, T) == []
    assert evaluate_alarms('r', {}, {'disk_used_bytes': 92, 'disk_total_bytes': 100,
                                     'temperature_c': 77.0}, 2.0, T) == []
    cleared = evaluate_alarms('r', active, {'disk_used_bytes': 50, 'disk_total_bytes': 100,
                                            'temperature_c': 60.0}, 3.0, T)
    assert all(isinstance(e, ev.ResourceAlarmCleared) for e in cleared) and len(cleared) == 2
    # Unknown values (NaN sent as null, missing total) decide nothing.
    assert evaluate_alarms('r', active, {'disk_used_bytes': 99, 'disk_total_bytes': 0,
                                         'temperature_c': None, 'battery_percent': True},
                           4.0, T) == []


def test_session_events() -> None:
    state = enrolled()
    started = state.on_robot_event(BOOT, 1, fleet_event(
        'teleop.session_started', {'session_id': 's1', 'started_at': 10.0, 'score': 0.9}),
        50.0)
    assert started.events == (ev.TeleopSessionStarted('r', session_id='s1', started_at=10.0,
                                                      score=0.9),)
    twice = started.state.on_robot_event(BOOT, 2, fleet_event(
        'teleop.session_started', {'session_id': 's1', 'started_at': 10.0, 'score': 0.9}),
        51.0)
    assert twice.events == () and twice.state.current.last_seq == 2
    ended = started.state.on_robot_event(BOOT, 3, fleet_event(
        'teleop.session_ended', {'session_id': 's1', 'started_at': 10.0, 'ended_at': 40.0,
                                 'duration_s': 30.0, 'reason': 'shutdown'}), 52.0)
    assert ended.events[0].reason == 'shutdown' and ended.state.aggregate.session_id is None


@pytest.mark.parametrize('event_type, payload, error', [
    ('teleop.session_started', {'session_id': '', 'started_at': 1.0}, 'needs session_id'),
    ('teleop.session_started', {'session_id': 's', 'started_at': 'x'}, 'needs session_id'),
    ('teleop.session_ended', {'session_id': 's', 'started_at': 1.0}, 'needs session_id'),
    ('teleop.session_ended', {'session_id': 's', 'started_at': 1.0, 'ended_at': 2.0,
                              'duration_s': 1.0, 'reason': 7}, 'needs session_id'),
    ('battery.swap', '[1, 2]', 'JSON object'),
    ('battery.swap', '{nope', 'not JSON'),
    ('battery.swap', 'x' * 20_000, 'longer than'),
])
def test_unusable_payloads_are_kept_as_reported_events(event_type: str, payload: Any,
                                                       error: str) -> None:
    out = enrolled().on_robot_event(BOOT, 1, fleet_event(event_type, payload), 50.0)
    (reported,) = out.events
    assert isinstance(reported, ev.RobotEventReported)
    assert error in reported.payload_error and reported.event_type == event_type
    assert len(reported.payload['payload_json']) <= 1024


def test_reported_event_fields() -> None:
    out = enrolled().on_robot_event(BOOT, 1, fleet_event(
        'battery.swap', {'slot': 2}, severity=9, sequence=12, header={}), 77.0)
    (reported,) = out.events
    assert reported.robot_severity == 'critical' and reported.robot_sequence == 12
    assert reported.at == 77.0 and reported.payload == {'slot': 2}
    empty = enrolled().on_robot_event(BOOT, 1, fleet_event('x', '', payload_json=''), 1.0)
    assert empty.events[0].payload == {}
    with pytest.raises(InvalidRobotMessage, match='event_type'):
        enrolled().on_robot_event(BOOT, 1, fleet_event('', {}), 1.0)
    with pytest.raises(InvalidRobotMessage, match='payload_json'):
        enrolled().on_robot_event(BOOT, 1, fleet_event('x', {}, payload_json=3), 1.0)


def test_superseded_session_is_closed_where_the_next_starts() -> None:
    state = enrolled().on_robot_event(BOOT, 1, fleet_event(
        'teleop.session_started', {'session_id': 's1', 'started_at': 10.0, 'score': 0.9}),
        50.0).state
    out = state.on_robot_event(BOOT, 2, fleet_event(
        'teleop.session_started', {'session_id': 's2', 'started_at': 70.0, 'score': 0.9}), 71.0)
    closed, opened = out.events
    assert closed == ev.TeleopSessionEnded('r', session_id='s1', started_at=10.0, ended_at=70.0,
                                           duration_s=60.0, reason='superseded')
    assert opened.session_id == 's2' and out.state.aggregate.session_id == 's2'


def test_deployment_status() -> None:
    msg = {'header': header(5.0), 'deployment_id': 'd1', 'release_version': '1.1',
           'previous_version': '1.0', 'phase': 3, 'progress': 0.4, 'message': 'copying'}
    (event,) = enrolled().on_deployment_status(BOOT, 1, msg, 9.0).events
    assert (event.phase, event.at, event.progress) == ('installing', 5.0, pytest.approx(0.4))
    (odd,) = enrolled().on_deployment_status(BOOT, 1, {**msg, 'phase': 42}, 9.0).events
    assert odd.phase == 'unknown'
    with pytest.raises(InvalidRobotMessage, match='deployment_id'):
        enrolled().on_deployment_status(BOOT, 1, {**msg, 'deployment_id': None}, 9.0)


def test_current_state_seen() -> None:
    cur = CurrentState().seen(BOOT, 5)
    assert (cur.boot_id, cur.last_seq) == (BOOT, 5)
    assert cur.seen(BOOT, 3) is cur
    assert cur.seen('boot0002', 9) is cur  # another boot's message does not move the boot
    assert cur.seen(BOOT, 7).last_seq == 7


_NUMBERS = st.one_of(st.none(), st.floats(allow_nan=False, min_value=-1e20, max_value=1e20),
                     st.integers(min_value=-(2**40), max_value=2**40),
                     st.sampled_from([15.0, 20.0, 75.0, 80.0, 0, 95, 100, 0.95]))


@settings(max_examples=500, deadline=None)
@given(battery=_NUMBERS, temperature=_NUMBERS, used=_NUMBERS, total=_NUMBERS)
def test_quiet_values_raise_no_alarm(battery: Any, temperature: Any, used: Any,
                                     total: Any) -> None:
    """The heartbeat's shortcut never skips an alarm the full evaluation would raise."""
    values = {'battery_percent': battery, 'temperature_c': temperature,
              'disk_used_bytes': used, 'disk_total_bytes': total}
    thresholds = AlarmThresholds()
    if alarms_quiet(values, thresholds):
        assert evaluate_alarms('r', {}, values, 0.0, thresholds) == []


def test_ordinary_values_are_quiet_and_alarming_ones_not() -> None:
    t = AlarmThresholds()
    ordinary = {'battery_percent': 80.0, 'temperature_c': 50.0, 'disk_used_bytes': 10,
                'disk_total_bytes': 100}
    assert alarms_quiet(ordinary, t) and alarms_quiet({}, t)
    for key, value in (('battery_percent', 5.0), ('temperature_c', 90.0),
                       ('disk_used_bytes', 99), ('battery_percent', 80)):
        assert not alarms_quiet({**ordinary, key: value}, t)


def test_a_heartbeat_without_resources_keeps_the_last_ones() -> None:
    first = enrolled().on_heartbeat(BOOT, 1, hb(), 100.5, T)
    lean = {k: v for k, v in hb(101.0, state=3, sequence=2).items() if k != 'resources'}
    second = first.state.on_heartbeat(BOOT, 2, lean, 101.5, T)
    cur = second.state.current
    assert cur.resources == {'battery_percent': 80.0, 'temperature_c': 40.0}
    assert (cur.heartbeat_seq, cur.last_heartbeat_at, cur.state) == (2, 101.5, 'teleop')
    # An alarm raised by the last resources stays raised, and is not raised again.
    hot = second.state.on_heartbeat(
        BOOT, 3, hb(102.0, resources={'temperature_c': 95.0}), 102.5, T)
    assert [e.TYPE for e in hot.events] == ['ResourceAlarmRaised']
    quiet = hot.state.on_heartbeat(BOOT, 4, {**lean, 'header': header(103.0)}, 103.5, T)
    assert quiet.events == () and quiet.state.current.resources == {'temperature_c': 95.0}
    assert quiet.state.aggregate.alarms.keys() == {'temperature_high'}
    # A v1 heartbeat with resources replaces them whole, as before.
    v1 = quiet.state.on_heartbeat(BOOT, 5, hb(104.0), 104.5, T)
    assert v1.state.current.resources == {'battery_percent': 80.0, 'temperature_c': 40.0}
