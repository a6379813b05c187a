"""HeartbeatReducer: rounding, leaving unchanged resources out, baseline only from acks."""

import json
import math

import pytest

from lekiwi_agent_ros.uplink.heartbeat_reducer import (
    FEATURE,
    HeartbeatReducer,
    ReducerConfig,
    changed,
    round_value,
)

BOOT = 'b00700000000beef'


def resources(**change: float) -> dict:
    values = {
        'cpu_percent': 12.345678901234,
        'load_average_1min': 0.4199999868869781,
        'memory_used_bytes': 1_234_567_890,
        'memory_total_bytes': 8_000_000_000,
        'disk_used_bytes': 12_000_000_000,
        'disk_total_bytes': 64_000_000_000,
        'temperature_c': 48.123456789,
        'battery_voltage_v': 12.03999996185,
        'battery_percent': 87.5,
        'network_tx_bytes_per_s': 812.3333333333,
        'network_rx_bytes_per_s': 1023.987654321,
        'uptime_s': 3600.123456,
    }
    values.update(change)
    return values


def heartbeat(seq: int, **change: float) -> str:
    return json.dumps({'robot_id': 'kiwi-001', 'boot_id': BOOT, 'sequence': seq,
                       'resources': resources(**change)})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def reducer(clock: Clock, features: tuple = (FEATURE,)) -> HeartbeatReducer:
    r = HeartbeatReducer(ReducerConfig(refresh_s=60.0), clock)
    r.connection_ready(features)
    return r


def sent(r: HeartbeatReducer, seq: int, **change: float) -> dict:
    return json.loads(r.reduce((BOOT, seq), heartbeat(seq, **change)))


def test_round_value_keeps_four_significant_digits_and_never_coarser_than_a_tenth() -> None:
    assert round_value(12.345678901234, 4) == 12.35
    assert round_value(0.0012345678, 4) == 0.001235
    assert round_value(3600.123456, 4) == 3600.1
    assert round_value(123456.78, 4) == 123456.8
    assert round_value(-48.123456, 4) == -48.12
    for kept in (0.0, 7, None, math.inf):
        assert round_value(kept, 4) == kept


def test_changed_uses_each_fields_tolerance() -> None:
    tolerances = ReducerConfig().tolerances
    base = resources()
    assert not changed(base, resources(cpu_percent=16.0), tolerances)  # 3.7 points
    assert changed(base, resources(cpu_percent=18.0), tolerances)  # 5.7 points
    assert not changed(base, resources(uptime_s=9999.0), tolerances)  # refreshed, not a change
    # Memory and disk in use are judged against their totals (1 % of 8 GB, 0.5 % of 64 GB).
    assert not changed(base, resources(memory_used_bytes=1_300_000_000), tolerances)
    assert changed(base, resources(memory_used_bytes=1_320_000_000), tolerances)
    assert not changed(base, resources(disk_used_bytes=12_300_000_000), tolerances)
    assert changed(base, resources(disk_used_bytes=12_330_000_000), tolerances)
    assert changed(base, resources(disk_total_bytes=64_000_000_001), tolerances)  # exact
    assert changed(base, resources(temperature_c=None), tolerances)  # number -> null
    assert changed(base, {k: v for k, v in base.items() if k != 'uptime_s'}, tolerances)


def test_resources_are_rounded_on_the_wire(clock: Clock) -> None:
    msg = sent(reducer(clock, features=()), 1)
    assert msg['resources']['cpu_percent'] == 12.35
    assert msg['resources']['memory_used_bytes'] == 1_234_567_890
    assert msg['robot_id'] == 'kiwi-001' and msg['sequence'] == 1


def test_without_the_feature_every_heartbeat_carries_resources(clock: Clock) -> None:
    r = reducer(clock, features=())
    sent(r, 1)
    r.acknowledged([(BOOT, 1)])
    for seq in range(2, 6):
        clock.t += 1.0
        assert 'resources' in sent(r, seq)


def test_unchanged_resources_are_left_out_once_the_server_acknowledged_them(clock: Clock) -> None:
    r = reducer(clock)
    assert 'resources' in sent(r, 1)  # no baseline on a new connection
    clock.t += 1.0
    assert 'resources' in sent(r, 2)  # 1 not acknowledged yet: it may never arrive
    r.acknowledged([(BOOT, 1), (BOOT, 2)])
    clock.t += 1.0
    third = sent(r, 3, cpu_percent=14.0, uptime_s=3602.0)
    assert 'resources' not in third and third['sequence'] == 3
    r.acknowledged([(BOOT, 3)])
    clock.t += 1.0
    moved = sent(r, 4, cpu_percent=30.0)
    assert moved['resources']['cpu_percent'] == 30.0
    assert r.elided_total == 1


def test_a_lost_heartbeat_with_resources_never_becomes_the_baseline(clock: Clock) -> None:
    r = reducer(clock)
    sent(r, 1)
    r.acknowledged([(BOOT, 1)])
    clock.t += 1.0
    assert sent(r, 2, cpu_percent=40.0)['resources']['cpu_percent'] == 40.0
    # 2 is never acknowledged (connection lost, or superseded in the outbox): the baseline is
    # still 1, so heartbeats close to 2 keep carrying resources until one is acknowledged.
    clock.t += 1.0
    assert 'resources' in sent(r, 3, cpu_percent=40.0)
    r.acknowledged([(BOOT, 3)])
    clock.t += 1.0
    assert 'resources' not in sent(r, 4, cpu_percent=41.0)


def test_resources_go_again_after_refresh_s_and_on_every_new_connection(clock: Clock) -> None:
    r = reducer(clock)
    sent(r, 1)
    r.acknowledged([(BOOT, 1)])
    clock.t += 59.0
    assert 'resources' not in sent(r, 2)
    clock.t += 1.0
    assert 'resources' in sent(r, 3)  # 60 s after the baseline was sent
    r.acknowledged([(BOOT, 3)])
    clock.t += 1.0
    assert 'resources' not in sent(r, 4)
    r.connection_ready([FEATURE])
    assert 'resources' in sent(r, 5)


def test_an_ack_of_an_older_heartbeat_does_not_replace_a_newer_baseline(clock: Clock) -> None:
    r = reducer(clock)
    sent(r, 1)
    clock.t += 1.0
    sent(r, 2, cpu_percent=40.0)
    r.acknowledged([(BOOT, 2)])
    r.acknowledged([(BOOT, 1)])
    clock.t += 1.0
    assert 'resources' not in sent(r, 3, cpu_percent=40.0)


def test_nothing_is_left_out_while_newer_resources_may_still_arrive(clock: Clock) -> None:
    r = reducer(clock)
    sent(r, 1)
    r.acknowledged([(BOOT, 1)])
    clock.t += 1.0
    assert 'resources' in sent(r, 2, cpu_percent=40.0)  # moved: sent, not acknowledged yet
    clock.t += 1.0
    # Back near the baseline, but the server may hold 2's resources by now: send these.
    assert sent(r, 3)['resources']['cpu_percent'] == 12.35
    r.acknowledged([(BOOT, 2), (BOOT, 3)])
    clock.t += 1.0
    assert 'resources' not in sent(r, 4)


def test_a_heartbeat_never_acknowledged_stops_holding_elision_after_settle_s(
        clock: Clock) -> None:
    r = reducer(clock)
    sent(r, 1)
    r.acknowledged([(BOOT, 1)])
    clock.t += 1.0
    sent(r, 2, cpu_percent=40.0)  # refused for good, say: never acknowledged
    clock.t += 5.0
    assert 'resources' in sent(r, 3)
    clock.t += 9.0
    assert 'resources' in sent(r, 4)  # 3 went 9 s ago: still unsettled
    clock.t += 11.0  # everything with resources went more than 10 s ago
    assert 'resources' not in sent(r, 5)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match='refresh_s'):
        ReducerConfig(refresh_s=0.0)
    with pytest.raises(ValueError, match='settle_s'):
        ReducerConfig(settle_s=0.0)
    with pytest.raises(ValueError, match='significant_digits'):
        ReducerConfig(significant_digits=0)
