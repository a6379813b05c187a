"""Event classes, the type registry, schema versions and upcasting (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from lekiwi_fleet_server.domain import events as ev


def _samples() -> list[ev.DomainEvent]:
    return [
        ev.RobotEnrolled('r', tags=('lab', 'eu'), enrolled_at=1.0),
        ev.RobotTokenRevoked('r', revoked_at=2.0),
        ev.RobotCameOnline('r', at=3.0, reason='connected'),
        ev.RobotWentOffline('r', at=4.0, reason='timeout'),
        ev.TeleopSessionStarted('r', session_id='s', started_at=5.0, score=0.8),
        ev.TeleopSessionEnded('r', session_id='s', started_at=5.0, ended_at=9.0, duration_s=4.0,
                              reason='inactive'),
        ev.RobotVersionChanged('r', at=6.0, agent_version='0.2', software_version='1.1',
                               previous_agent_version='0.1', previous_software_version='1.0'),
        ev.ResourceAlarmRaised('r', at=7.0, alarm='battery_low', value=9.0, threshold=15.0),
        ev.ResourceAlarmCleared('r', at=8.0, alarm='battery_low', value=50.0),
        ev.RobotEventReported('r', at=9.0, event_type='x.y', robot_severity='error',
                              payload={'a': [1, 2]}, robot_sequence=3),
        ev.DeploymentStatusReported('r', at=10.0, deployment_id='d', release_version='1.1',
                                    previous_version='1.0', phase='failed', progress=0.5,
                                    message='disk'),
        ev.RobotTokenRotated('r', rotated_at=11.0, by='ada'),
        ev.RobotReEnrolled('r', tags=('lab',), reenrolled_at=12.0, by='cli:root'),
        ev.DeploymentCreated('', deployment_id='d', release_version='2', manifest_sha256='ab',
                             robots=('a', 'b'), waves=(0.5, 1.0), parallelism=3, at=1.0),
        ev.WaveStarted('', deployment_id='d', wave=0, robots=('a',), at=1.0),
        ev.RobotUpdateStarted('a', deployment_id='d', release_version='2', goal_id='g', at=1.0),
        ev.RobotUpdateDeferred('a', deployment_id='d', reason='teleop', at=1.0),
        ev.RobotUpdateSucceeded('a', deployment_id='d', release_version='2', previous_version='1',
                                transferred_bytes=5, full_bytes=9, duration_s=2.0, at=1.0),
        ev.RobotUpdateFailed('a', deployment_id='d', release_version='2', reason='unhealthy',
                             rolled_back=True, final_version='1', at=1.0),
        ev.RobotUpdateSkipped('a', deployment_id='d', reason='offline past deadline', at=1.0),
        ev.RobotRollbackStarted('a', deployment_id='d', to_version='1', goal_id='g', at=1.0),
        ev.RobotRolledBack('a', deployment_id='d', to_version='1', succeeded=False,
                           message='x', at=1.0),
        ev.DeploymentPaused('', deployment_id='d', reason='gate', at=1.0),
        ev.DeploymentResumed('', deployment_id='d', by='op', at=1.0),
        ev.DeploymentRollbackStarted('', deployment_id='d', reason='gate', at=1.0),
        ev.DeploymentRolledBack('', deployment_id='d', at=1.0),
        ev.DeploymentAbortRequested('', deployment_id='d', by='op', at=1.0),
        ev.DeploymentAborted('', deployment_id='d', at=1.0),
        ev.DeploymentCompleted('', deployment_id='d', succeeded=1, failed=1, skipped=0, at=1.0),
        ev.RobotCommandSent('r', command_id='cmd-1', command_type='ping', outcome='accepted',
                            message='pong', at=10.0),
        ev.RobotWentStale('r', at=11.0, reason='silent'),
        ev.RobotStaleEnded('r', at=11.5, reason='heard'),
        ev.RobotFlapped('r', at=12.0, changes_in_window=5),
        ev.RobotPresenceSettled('r', at=13.0, state='online', reason='flap_ended'),
        ev.RobotFlagGuardTripped('r', flag='uplink_transport', metric='uplink_latency_p99_ms',
                                 above=500.0, observed=1210.0, own=1210.0, action='set',
                                 value='polling', at=14.0),
    ]


def test_every_class_is_registered_once_in_the_past_tense() -> None:
    assert set(ev.EVENT_TYPES) == {cls.TYPE for cls in ev.EVENT_CLASSES}
    assert len(ev.EVENT_TYPES) == len(ev.EVENT_CLASSES) == len(_samples())
    for name in ev.EVENT_TYPES:
        assert name.endswith(('ed', 'Online', 'Offline', 'RolledBack', 'WentStale', 'Sent')), name


@pytest.mark.parametrize('event', _samples(), ids=lambda e: e.TYPE)
def test_encode_decode_round_trip(event: ev.DomainEvent) -> None:
    type_name, version, data = ev.encode(event)
    assert (type_name, version) == (event.TYPE, 1)
    assert ev.decode(type_name, version, data) == event
    assert isinstance(event.summary(), str) and event.summary()
    assert event.severity in ev.SEVERITIES


def test_encoded_data_is_plain_json() -> None:
    _, _, data = ev.encode(ev.RobotEnrolled('r', tags=('a',), enrolled_at=1.0))
    assert data == {'robot_id': 'r', 'tags': ['a'], 'enrolled_at': 1.0}


def test_summaries_and_severities() -> None:
    offline = ev.RobotWentOffline('r', at=1.0, reason='timeout')
    assert offline.severity == 'warning' and 'timeout' in offline.summary()
    assert ev.RobotWentOffline('r', reason='server_restart').severity == 'info'
    version = ev.RobotVersionChanged('r', agent_version='0.2', software_version='1.0',
                                     previous_agent_version='0.1',
                                     previous_software_version='1.0')
    assert version.summary() == 'version changed: agent 0.1 -> 0.2'
    first = ev.RobotVersionChanged('r', agent_version='0.2', software_version='1.0')
    assert first.summary() == 'version changed: agent ? -> 0.2, software ? -> 1.0'
    failed = ev.DeploymentStatusReported('r', phase='failed')
    assert failed.severity == 'error'
    assert ev.DeploymentStatusReported('r', phase='rolled_back').severity == 'warning'
    assert ev.DeploymentStatusReported('r', phase='succeeded').severity == 'info'
    refused = ev.RobotEventReported('r', event_type='x', payload_error='not JSON')
    assert 'refused' in refused.summary()
    assert ev.RobotEnrolled('r').summary() == 'enrolled'
    assert ev.ResourceAlarmRaised('r', alarm='disk_full', value=0.97,
                                  threshold=0.95).summary().startswith('disk full')
    assert ev.DomainEvent('r').summary() == '' and ev.DomainEvent('r').severity == 'info'


@dataclasses.dataclass(frozen=True, slots=True)
class _RenamedV2(ev.DomainEvent):
    """A v2 event whose v1 called `level` what v2 calls `percent`."""

    TYPE: ClassVar[str] = 'BatteryLevelMeasured'
    SCHEMA_VERSION: ClassVar[int] = 2
    percent: float = 0.0


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data['percent'] = data.pop('level')
    return data


def test_upcasting_runs_the_chain_of_upcasters() -> None:
    types = {_RenamedV2.TYPE: _RenamedV2}
    upcasters = {(_RenamedV2.TYPE, 1): _v1_to_v2}
    event = ev.decode(_RenamedV2.TYPE, 1, {'robot_id': 'r', 'level': 42.0},
                      event_types=types, upcasters=upcasters)
    assert event == _RenamedV2('r', percent=42.0)
    # Current data passes untouched.
    assert ev.decode(_RenamedV2.TYPE, 2, {'robot_id': 'r', 'percent': 1.0},
                     event_types=types, upcasters=upcasters) == _RenamedV2('r', percent=1.0)


@pytest.mark.parametrize('type_name, version, data, message', [
    ('Nope', 1, {'robot_id': 'r'}, 'unknown event type'),
    ('RobotEnrolled', 2, {'robot_id': 'r'}, 'not readable'),
    ('RobotEnrolled', 0, {'robot_id': 'r'}, 'not readable'),
    ('RobotEnrolled', 1, {'robot_id': 'r', 'colour': 'red'}, 'unknown fields'),
    ('RobotEnrolled', 1, {'tags': []}, 'lacks robot_id'),
])
def test_decode_refuses_what_it_cannot_read(type_name: str, version: int,
                                            data: dict[str, Any], message: str) -> None:
    with pytest.raises(ev.EventDecodeError, match=message):
        ev.decode(type_name, version, data)


def test_missing_upcaster_is_an_error() -> None:
    with pytest.raises(ev.EventDecodeError, match='no upcaster'):
        ev.decode(_RenamedV2.TYPE, 1, {'robot_id': 'r', 'level': 1.0},
                  event_types={_RenamedV2.TYPE: _RenamedV2}, upcasters={})
