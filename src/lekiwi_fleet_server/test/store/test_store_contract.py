"""The FleetStore contract, run against SQLite and PostgreSQL alike (`store` is parametrized)."""

from __future__ import annotations

import pytest
from store_messages import (
    T0,
    deployment,
    fleet_event,
    heartbeat,
    offline,
    online,
    session_ended,
    session_started,
    telemetry,
    teleop_status,
    token_hash,
)

from lekiwi_fleet_server.store.interface import (
    InvalidQuery,
    MessageKey,
    OperatorAlreadyExists,
    PresenceChange,
    RobotAlreadyEnrolled,
    RobotFilter,
    RobotMessage,
    UnknownRobot,
)
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BOOT = 'boot0001'


def enrol(store: SqlFleetStore, robot_id: str, tags: tuple[str, ...] = ()) -> None:
    store.enrol_robot(robot_id, token_hash(robot_id), tags, now=T0)


def test_enrol_then_credentials_and_never_seen(store: SqlFleetStore) -> None:
    summary = store.enrol_robot('kiwi-1', token_hash('kiwi-1'), ['lab', 'eu'], now=T0)
    assert summary.status == 'never_seen' and summary.tags == ('lab', 'eu')
    creds = store.robot_credentials('kiwi-1')
    assert creds is not None and creds.token_sha256 == token_hash('kiwi-1')
    assert not creds.revoked
    assert store.robot_credentials('nobody') is None
    assert store.get_robot('kiwi-1', now=T0) == summary


def test_enrol_twice_is_refused(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    with pytest.raises(RobotAlreadyEnrolled):
        store.enrol_robot('kiwi-1', token_hash('other'), (), now=T0 + 1)
    assert store.robot_credentials('kiwi-1').token_sha256 == token_hash('kiwi-1')


@pytest.mark.parametrize('robot_id, token, tags', [
    ('', token_hash('x'), ()), ('bad id', token_hash('x'), ()), ('a' * 65, token_hash('x'), ()),
    ('kiwi', 'not-a-hash', ()), ('kiwi', token_hash('x'), ('has space',)),
    ('kiwi', token_hash('x'), 'lab'),
])
def test_enrol_refuses_bad_input(store: SqlFleetStore, robot_id: str, token: str,
                                 tags: tuple[str, ...]) -> None:
    with pytest.raises(InvalidQuery):
        store.enrol_robot(robot_id, token, tags, now=T0)
    assert store.list_robots(RobotFilter(), now=T0) == []


def test_revoke(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.revoke_robot('kiwi-1', now=T0 + 5)
    store.revoke_robot('kiwi-1', now=T0 + 6)  # idempotent
    assert store.robot_credentials('kiwi-1').revoked
    assert store.get_robot('kiwi-1', now=T0 + 7).revoked
    types = [e.type for e in store.robot_timeline('kiwi-1', 0, 10).events]
    assert types == ['RobotEnrolled', 'RobotTokenRevoked']
    with pytest.raises(UnknownRobot):
        store.revoke_robot('nobody', now=T0)


def test_operators(store: SqlFleetStore) -> None:
    op = store.create_operator('ada', 'admin', token_hash('ada'), now=T0)
    assert store.operator_by_token(token_hash('ada')) == op
    assert store.operator_by_token(token_hash('nobody')) is None
    with pytest.raises(OperatorAlreadyExists):
        store.create_operator('ada2', 'viewer', token_hash('ada'), now=T0)
    with pytest.raises(InvalidQuery):
        store.create_operator('eve', 'root', token_hash('eve'), now=T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        store.create_operator('', 'viewer', token_hash('eve'), now=T0)


def test_heartbeat_updates_current_state_without_events(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.commit_batch([], [online('kiwi-1', T0)], now=T0)
    first = store.commit_batch([heartbeat('kiwi-1', BOOT, 1, T0 + 1)], now=T0 + 1)
    assert [e.type for e in first.new_events] == ['RobotVersionChanged']
    result = store.commit_batch([heartbeat('kiwi-1', BOOT, 2, T0 + 2, teleop=True, score=0.7)],
                                now=T0 + 2)
    assert result.acknowledged == (MessageKey('kiwi-1', BOOT, 2),)
    assert result.new_events == () and result.duplicates == 0
    (changed,) = result.changed_robots
    robot = store.get_robot('kiwi-1', now=T0 + 2)
    assert robot == changed
    assert robot.status == 'online' and robot.last_seq == 2 and robot.heartbeat_sequence == 2
    assert robot.teleop_active and robot.teleop_score == pytest.approx(0.7)
    assert robot.state == 'idle' and robot.resources['battery_percent'] == 80.0
    assert robot.agent_version == '0.1.0' and robot.software_version == '1.0.0'


def test_duplicate_and_older_heartbeats_store_nothing(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.commit_batch([heartbeat('kiwi-1', BOOT, 5, T0 + 5, agent='0.2.0')], now=T0 + 5)
    before = store.get_robot('kiwi-1', now=T0 + 6)
    again = store.commit_batch([heartbeat('kiwi-1', BOOT, 5, T0 + 5, agent='0.2.0'),
                                heartbeat('kiwi-1', BOOT, 3, T0 + 3, agent='0.1.0')],
                               now=T0 + 6)
    assert again.duplicates == 2 and len(again.acknowledged) == 2
    assert again.new_events == () and again.changed_robots == ()
    assert store.get_robot('kiwi-1', now=T0 + 6) == before


def test_same_message_twice_in_one_batch(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    msg = session_started('kiwi-1', BOOT, 1, T0, 's1')
    result = store.commit_batch([msg, msg], now=T0)
    assert result.duplicates == 1 and len(result.acknowledged) == 2
    assert [e.type for e in result.new_events] == ['TeleopSessionStarted']


def test_new_boot_heartbeat_replaces_the_old_boot(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.commit_batch([heartbeat('kiwi-1', BOOT, 40, T0 + 1)], now=T0 + 1)
    store.commit_batch([heartbeat('kiwi-1', 'boot0002', 1, T0 + 10)], now=T0 + 10)
    robot = store.get_robot('kiwi-1', now=T0 + 10)
    assert (robot.boot_id, robot.last_seq) == ('boot0002', 1)
    # A late heartbeat of the old boot (robot clock says it is older) changes nothing.
    late = store.commit_batch([heartbeat('kiwi-1', BOOT, 41, T0 + 2)], now=T0 + 11)
    assert late.duplicates == 1
    assert store.get_robot('kiwi-1', now=T0 + 11).boot_id == 'boot0002'


def test_presence_and_stale_status(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    enrol(store, 'kiwi-2')
    result = store.commit_batch([heartbeat('kiwi-1', BOOT, 1, T0 + 1)],
                                [online('kiwi-1', T0), online('kiwi-2', T0)], now=T0 + 1)
    assert {e.type for e in result.new_events} == {'RobotCameOnline', 'RobotVersionChanged'}
    stale_after = store.config.stale_after_s
    assert store.get_robot('kiwi-1', now=T0 + 1 + stale_after - 0.1).status == 'online'
    assert store.get_robot('kiwi-1', now=T0 + 1 + stale_after + 0.1).status == 'stale'
    # Came online, never sent a heartbeat: stale once the presence is old.
    assert store.get_robot('kiwi-2', now=T0 + stale_after + 0.1).status == 'stale'
    store.commit_batch([], [offline('kiwi-1', T0 + 20, 'timeout')], now=T0 + 20)
    robot = store.get_robot('kiwi-1', now=T0 + 20)
    assert robot.status == 'offline'
    last = store.robot_timeline('kiwi-1', 0, 100).events[-1]
    assert last.type == 'RobotWentOffline' and last.data['reason'] == 'timeout'
    # Offline twice: one event.
    again = store.commit_batch([], [offline('kiwi-1', T0 + 21)], now=T0 + 21)
    assert again.new_events == ()


def test_list_filters_and_summary(store: SqlFleetStore) -> None:
    enrol(store, 'a', ('lab',))
    enrol(store, 'b', ('lab', 'eu'))
    enrol(store, 'c')
    store.commit_batch([
        heartbeat('a', BOOT, 1, T0 + 1, software='2.0.0', teleop=True, score=0.9),
        heartbeat('b', BOOT, 1, T0 + 1, software='1.0.0'),
    ], [online('a', T0), online('b', T0)], now=T0 + 1)
    now = T0 + 2

    def ids(**kw: object) -> list[str]:
        return [r.robot_id for r in store.list_robots(RobotFilter(**kw), now=now)]

    assert ids() == ['a', 'b', 'c']
    assert ids(status='online') == ['a', 'b']
    assert ids(status='never_seen') == ['c']
    assert ids(teleop_active=True) == ['a']
    assert ids(teleop_active=False) == ['b', 'c']
    assert ids(software_version='1.0.0') == ['b']
    assert ids(tag='lab') == ['a', 'b'] and ids(tag='eu') == ['b'] and ids(tag='x') == []
    assert ids(status='online', tag='eu') == ['b']
    with pytest.raises(InvalidQuery):
        ids(status='sleeping')
    summary = store.fleet_summary(now=now)
    assert summary.total == 3 and summary.teleop_active == 1
    assert dict(summary.by_status) == {'online': 2, 'stale': 0, 'offline': 0, 'never_seen': 1}
    assert dict(summary.by_software_version) == {'2.0.0': 1, '1.0.0': 1, 'unknown': 1}
    # Offline robots are not counted as teleoperated, whatever they said last.
    store.commit_batch([], [offline('a', T0 + 3)], now=T0 + 3)
    assert store.fleet_summary(now=T0 + 3).teleop_active == 0
    assert ids(teleop_active=True) == []


def test_mark_all_offline(store: SqlFleetStore) -> None:
    for robot_id in ('a', 'b', 'c'):
        enrol(store, robot_id)
    store.commit_batch([], [online('a', T0), online('b', T0)], now=T0)
    assert store.mark_all_offline(now=T0 + 1) == 2
    assert [r.status for r in store.list_robots(RobotFilter(), now=T0 + 1)] == [
        'offline', 'offline', 'never_seen']
    last = store.robot_timeline('a', 0, 10).events[-1]
    assert last.data['reason'] == 'server_restart'
    assert store.mark_all_offline(now=T0 + 2) == 0


def test_unknown_robot_messages_are_rejected(store: SqlFleetStore) -> None:
    result = store.commit_batch([heartbeat('ghost', BOOT, 1, T0)], [online('ghost', T0)],
                                now=T0)
    assert result.acknowledged == () and result.new_events == ()
    (rejected,) = result.rejected
    assert rejected.key == MessageKey('ghost', BOOT, 1) and 'not enrolled' in rejected.reason
    assert store.get_robot('ghost', now=T0) is None


def test_invalid_message_is_rejected_and_the_rest_committed(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    bad = heartbeat('kiwi-1', BOOT, 1, T0)
    bad.msg['teleop_active'] = 'yes'  # type: ignore[index]
    bad_telemetry = telemetry('kiwi-1', BOOT, 2, T0, 1, 1, {'cpu_percent': 1.0}, full=True)
    bad_telemetry.msg['field_values'] = []  # type: ignore[index]
    good = heartbeat('kiwi-1', BOOT, 3, T0 + 1)
    result = store.commit_batch([bad, bad_telemetry, good], now=T0 + 1)
    assert [r.key.seq for r in result.rejected] == [1, 2]
    assert 'teleop_active' in result.rejected[0].reason
    assert result.acknowledged == (MessageKey('kiwi-1', BOOT, 3),)
    assert store.get_robot('kiwi-1', now=T0 + 1).last_seq == 3


def test_robot_events_become_events_once(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    msgs = [
        fleet_event('kiwi-1', BOOT, 1, T0, 'battery.swap', {'slot': 2}, severity=2),
        fleet_event('kiwi-1', BOOT, 2, T0, 'weird', 'not json'),
        deployment('kiwi-1', BOOT, 3, T0, phase=1),
        deployment('kiwi-1', BOOT, 4, T0, phase=9),
    ]
    result = store.commit_batch(msgs, now=T0)
    assert [e.type for e in result.new_events] == [
        'RobotEventReported', 'RobotEventReported', 'DeploymentStatusReported',
        'DeploymentStatusReported']
    assert result.new_events[0].data['payload'] == {'slot': 2}
    assert result.new_events[0].metadata == {'robot_id': 'kiwi-1', 'boot_id': BOOT, 'seq': 1,
                                             'causation': 'fleet/events'}
    assert 'not JSON' in result.new_events[1].data['payload_error']
    assert result.new_events[3].data['phase'] == 'failed'
    again = store.commit_batch(msgs, now=T0 + 1)
    assert again.duplicates == 4 and again.new_events == ()
    assert len(store.robot_timeline('kiwi-1', 0, 100).events) == 5


def test_teleop_sessions(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.commit_batch([session_started('kiwi-1', BOOT, 1, T0, 's1')], now=T0)
    (open_session,) = store.teleop_sessions('kiwi-1')
    assert open_session.ended_at is None and open_session.score == pytest.approx(0.8)
    store.commit_batch([session_ended('kiwi-1', BOOT, 2, T0 + 30, 's1', T0),
                        session_started('kiwi-1', BOOT, 3, T0 + 40, 's2'),
                        session_started('kiwi-1', BOOT, 4, T0 + 90, 's3')], now=T0 + 90)
    sessions = store.teleop_sessions('kiwi-1')
    assert [s.session_id for s in sessions] == ['s3', 's2', 's1']
    assert sessions[2].duration_s == pytest.approx(30) and sessions[2].end_reason == 'inactive'
    # s2 never reported its end: s3 starting closes it.
    assert sessions[1].end_reason == 'superseded' and sessions[1].ended_at == T0 + 90
    assert sessions[0].ended_at is None


def test_teleop_status_is_current_state(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    store.commit_batch([teleop_status('kiwi-1', BOOT, 1, T0, active=True, score=0.9)],
                       [online('kiwi-1', T0)], now=T0)
    robot = store.get_robot('kiwi-1', now=T0)
    assert robot.teleop_active and robot.teleop_score == pytest.approx(0.9)
    result = store.commit_batch([teleop_status('kiwi-1', BOOT, 2, T0 + 1, active=False,
                                               score=0.1)], now=T0 + 1)
    assert result.new_events == ()
    assert not store.get_robot('kiwi-1', now=T0 + 1).teleop_active


def test_resource_alarms(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    low = heartbeat('kiwi-1', BOOT, 1, T0, res={'battery_percent': 9.0, 'temperature_c': 85.0})
    result = store.commit_batch([low], now=T0)
    raised = [e for e in result.new_events if e.type == 'ResourceAlarmRaised']
    assert sorted(e.data['alarm'] for e in raised) == ['battery_low', 'temperature_high']
    # Still low: no new alarm. Recovered past the clear threshold: cleared.
    still = store.commit_batch([heartbeat('kiwi-1', BOOT, 2, T0 + 1,
                                          res={'battery_percent': 10.0})], now=T0 + 1)
    assert still.new_events == ()
    cleared = store.commit_batch([heartbeat('kiwi-1', BOOT, 3, T0 + 2,
                                            res={'battery_percent': 50.0,
                                                 'temperature_c': 60.0})], now=T0 + 2)
    assert sorted(e.data['alarm'] for e in cleared.new_events) == [
        'battery_low', 'temperature_high']
    assert all(e.type == 'ResourceAlarmCleared' for e in cleared.new_events)


def test_telemetry_is_reconstructed_and_deduplicated(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    full = telemetry('kiwi-1', BOOT, 1, T0, 1, 1, {'cpu_percent': 10.0, 'battery_percent': 90.0},
                     full=True)
    delta = telemetry('kiwi-1', BOOT, 2, T0 + 1, 2, 1, {'cpu_percent': 30.0})
    store.commit_batch([full, delta], now=T0 + 1)
    robot = store.get_robot('kiwi-1', now=T0 + 1)
    assert robot.telemetry == {'cpu_percent': 30.0, 'battery_percent': 90.0}
    again = store.commit_batch([full, delta], now=T0 + 2)
    assert again.duplicates == 2
    points = store.telemetry_range('kiwi-1', T0 - 10, T0 + 10, 60.0)
    assert len(points) == 1
    assert points[0].values['cpu_percent'] == pytest.approx(20.0)
    assert points[0].values['battery_percent'] == pytest.approx(90.0)
    assert points[0].values['temperature_c'] is None


def test_telemetry_range_buckets_and_fields(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    start = 1_764_201_600.0  # a multiple of 60 s
    msgs = [telemetry('kiwi-1', BOOT, 1, start, 1, 1, {'cpu_percent': 0.0}, full=True)]
    msgs += [telemetry('kiwi-1', BOOT, i, start + (i - 1) * 10, i, 1, {'cpu_percent': float(i)})
             for i in range(2, 13)]  # 10 s apart over two minutes
    store.commit_batch(msgs, now=start + 120)
    points = store.telemetry_range('kiwi-1', start, start + 120, 60.0, ['cpu_percent'])
    assert [p.bucket_start for p in points] == [start, start + 60]
    assert points[0].values == {'cpu_percent': pytest.approx((0 + 2 + 3 + 4 + 5 + 6) / 6)}
    assert points[1].values == {'cpu_percent': pytest.approx((7 + 8 + 9 + 10 + 11 + 12) / 6)}
    assert store.telemetry_range('other', start, start + 120, 60.0) == []
    with pytest.raises(InvalidQuery):
        store.telemetry_range('kiwi-1', start, start + 120, 60.0, ['nonsense'])
    with pytest.raises(InvalidQuery):
        store.telemetry_range('kiwi-1', start, start - 1, 60.0)
    with pytest.raises(InvalidQuery):
        store.telemetry_range('kiwi-1', start, start + 1e9, 0.001)  # too many buckets


def test_timeline_paging(store: SqlFleetStore) -> None:
    enrol(store, 'a')
    enrol(store, 'b')
    store.commit_batch([fleet_event('a', BOOT, i, T0 + i, 'tick', {}) for i in range(1, 6)],
                       now=T0 + 6)
    page = store.robot_timeline('a', 0, 4)
    assert len(page.events) == 4 and page.next_after == page.events[-1].position
    rest = store.robot_timeline('a', page.next_after, 4)
    assert len(rest.events) == 2 and rest.next_after is None
    positions = [e.position for e in page.events + rest.events]
    assert positions == sorted(positions)
    fleet = store.fleet_timeline(0, 100)
    assert [e.robot_id for e in fleet.entries] == ['a', 'b'] + ['a'] * 5
    assert fleet.entries[0].summary == 'enrolled' and fleet.next_after is None
    only_b = store.fleet_timeline(0, 100, robot_id='b')
    assert [e.type for e in only_b.entries] == ['RobotEnrolled']
    with pytest.raises(InvalidQuery):
        store.robot_timeline('a', 0, 0)
    with pytest.raises(InvalidQuery):
        store.fleet_timeline(-1, 10)


def test_ping(store: SqlFleetStore) -> None:
    store.ping()


def test_hostile_input_is_refused_message_by_message(store: SqlFleetStore) -> None:
    """Nothing a robot sends may fail a whole batch (the gateway would retry it forever)."""
    enrol(store, 'kiwi-1')
    nul_version = heartbeat('kiwi-1', BOOT, 1, T0, agent='0.1\x00')
    long_version = heartbeat('kiwi-1', BOOT, 2, T0, software='v' * 200)
    surrogate_key = heartbeat('kiwi-1', BOOT, 3, T0, res={'cpu\ud800': 1.0})
    huge_int = heartbeat('kiwi-1', BOOT, 4, T0, res={'memory_used_bytes': 2**70})
    huge_float = telemetry('kiwi-1', BOOT, 5, T0, 1, 1, {'cpu_percent': 10**400}, full=True)
    nul_event = fleet_event('kiwi-1', BOOT, 6, T0, 'bad\x00type', {})
    bad_boot = heartbeat('kiwi-1', 'b' * 65, 7, T0)
    bad_robot = heartbeat('kiwi\x00', BOOT, 8, T0)
    bad_seq = heartbeat('kiwi-1', BOOT, -1, T0)
    nul_deployment = deployment('kiwi-1', BOOT, 9, T0, phase=1, deployment_id='d\x00')
    # Usable: odd payloads are kept as reported events with the reason they were refused.
    odd_payload = fleet_event('kiwi-1', BOOT, 10, T0, 'x.surrogate', '{"a": "\\ud800"}')
    big_payload = fleet_event('kiwi-1', BOOT, 11, T0, 'x.big',
                              '{"n": 123456789012345678901234567890, "s": "a\\u0000b"}')
    not_an_object = RobotMessage('kiwi-1', BOOT, 13, 'fleet/heartbeat', None, T0)  # type: ignore
    unknown_topic = RobotMessage('kiwi-1', BOOT, 14, 'fleet/other', {}, T0)
    good = heartbeat('kiwi-1', BOOT, 12, T0 + 1)
    result = store.commit_batch(
        [nul_version, long_version, surrogate_key, huge_int, huge_float, nul_event, bad_boot,
         bad_robot, bad_seq, nul_deployment, odd_payload, big_payload, not_an_object,
         unknown_topic, good],
        [PresenceChange('kiwi-1', True, T0, 'odd\x00reason' * 20)], now=T0 + 1)
    assert sorted(r.key.seq for r in result.rejected) == [-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14]
    assert all(r.reason for r in result.rejected)
    assert [k.seq for k in result.acknowledged] == [10, 11, 12]
    reported = {e.data['event_type']: e.data for e in result.new_events
                if e.type == 'RobotEventReported'}
    assert 'not JSON' in reported['x.surrogate']['payload_error']
    assert reported['x.big']['payload'] == {'n': 1.2345678901234568e29, 's': 'a\x00b'}
    online_event = next(e for e in result.new_events if e.type == 'RobotCameOnline')
    assert online_event.data['reason'] == 'unknown'
    robot = store.get_robot('kiwi-1', now=T0 + 1)
    assert robot.last_seq == 12 and robot.agent_version == '0.1.0'
    assert len(store.robot_timeline('kiwi-1', 0, 100).events) == len(result.new_events) + 1


def test_reads_with_impossible_ids_find_nothing(store: SqlFleetStore) -> None:
    enrol(store, 'kiwi-1')
    bad = 'kiwi\x00'
    assert store.get_robot(bad, now=T0) is None
    assert store.robot_credentials(bad) is None
    assert store.operator_by_token('x\x00') is None
    assert store.robot_timeline(bad, 0, 10).events == ()
    assert store.fleet_timeline(0, 10, robot_id=bad).entries == ()
    assert store.teleop_sessions(bad) == []
    assert store.telemetry_range(bad, T0, T0 + 60, 60.0) == []
    with pytest.raises(UnknownRobot):
        store.revoke_robot(bad, now=T0)
    with pytest.raises(InvalidQuery):
        store.list_robots(RobotFilter(tag='a\x00'), now=T0)
    with pytest.raises(InvalidQuery):
        store.list_robots(RobotFilter(software_version='1\x00'), now=T0)


def test_state_less_events_are_appended_with_their_actor(store: SqlFleetStore) -> None:
    from lekiwi_fleet_server.domain.events import RobotCommandSent, RobotWentStale

    enrol(store, 'kiwi-1')
    enrol(store, 'kiwi-2')
    store.record_robot_event(RobotCommandSent('kiwi-1', command_type='ping', outcome='accepted',
                                              at=T0 + 1), now=T0 + 1, actor='ana',
                             causation='api:command')
    with pytest.raises(UnknownRobot):
        store.record_robot_event(RobotWentStale('nobody', at=T0), now=T0)
    # Many robots in one call; robots not enrolled are skipped, not an error.
    assert store.record_robot_events(
        [RobotWentStale('kiwi-1', at=T0 + 2), RobotWentStale('kiwi-2', at=T0 + 2),
         RobotWentStale('nobody', at=T0 + 2), RobotWentStale('kiwi-1', at=T0 + 3)],
        now=T0 + 3, causation='discovery:presence') == 3
    assert store.record_robot_events([], now=T0) == 0
    events = store.robot_timeline('kiwi-1', 0, 100).events
    assert [e.type for e in events] == ['RobotEnrolled', 'RobotCommandSent', 'RobotWentStale',
                                        'RobotWentStale']
    assert events[1].metadata['actor'] == 'ana'
    assert events[1].metadata['causation'] == 'api:command'
    assert [e.type for e in store.robot_timeline('kiwi-2', 0, 100).events] == [
        'RobotEnrolled', 'RobotWentStale']
    # Recorded events change no state: the robot is still never seen.
    assert store.get_robot('kiwi-1', now=T0 + 4).status == 'never_seen'  # type: ignore[union-attr]
