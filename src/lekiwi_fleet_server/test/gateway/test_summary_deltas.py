"""SummaryDeltas: dashboard rows as deltas from what the updates carried before."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import orjson

from lekiwi_fleet_server.gateway.bus import encode_update
from lekiwi_fleet_server.gateway.summary_deltas import (
    SummaryDeltas,
    apply_delta,
    mapping_delta,
    summary_delta,
)
from lekiwi_fleet_server.store.interface import RobotSummary

RESOURCES = {'cpu_percent': 12.5, 'uptime_s': 100.0, 'temperature_c': 50.0}


def summary(robot_id: str = 'kiwi', **changes: Any) -> RobotSummary:
    base = RobotSummary(robot_id=robot_id, tags=('lab',), status='online', enrolled_at=1.0,
                        revoked=False, last_heartbeat_at=10.0, boot_id='b1', last_seq=1,
                        heartbeat_sequence=1, state='ready', agent_version='1.0',
                        software_version='2.0', resources=dict(RESOURCES),
                        telemetry={'cpu_percent': 12.5})
    return dataclasses.replace(base, **changes)


def whole(s: RobotSummary) -> dict[str, Any]:
    """A summary as a dashboard holds it (decoded JSON)."""
    return orjson.loads(encode_update('snapshot', 0.0, [s], []))['robots'][0]


def test_a_heartbeat_delta_carries_only_what_changed() -> None:
    before = summary()
    after = summary(last_heartbeat_at=11.0, last_seq=2, heartbeat_sequence=2,
                    resources={**RESOURCES, 'cpu_percent': 30.0, 'uptime_s': 101.0})
    assert summary_delta(before, after) == {
        'robot_id': 'kiwi', 'last_heartbeat_at': 11.0, 'last_seq': 2, 'heartbeat_sequence': 2,
        'resources': {'cpu_percent': 30.0, 'uptime_s': 101.0}}


def test_an_unchanged_summary_has_no_delta_and_a_removed_entry_is_null() -> None:
    assert summary_delta(summary(), summary()) is None
    fewer = {k: v for k, v in RESOURCES.items() if k != 'temperature_c'}
    assert summary_delta(summary(), summary(resources=fewer)) == {
        'robot_id': 'kiwi', 'resources': {'temperature_c': None}}
    assert mapping_delta({'a': 1}, {'b': 2}) == {'b': 2, 'a': None}
    assert mapping_delta({}, {}) == {}


def test_rows_are_whole_for_unseen_robots_and_deltas_after_remember() -> None:
    deltas = SummaryDeltas()
    first = [summary('a'), summary('b')]
    assert deltas.rows(first) == first  # never carried: whole rows
    assert len(deltas) == 0  # rows() does not change the memory
    deltas.remember(first)
    second = [summary('a', last_seq=2), summary('b')]
    assert deltas.rows(second) == [{'robot_id': 'a', 'last_seq': 2}]  # b did not change
    deltas.remember(second)
    deltas.forget(['a'])
    third = summary('a', last_seq=3)
    assert deltas.rows([third]) == [third]  # forgotten: whole again


def test_deltas_applied_to_a_snapshot_rebuild_every_summary() -> None:
    rng = random.Random(7)
    deltas = SummaryDeltas()
    current = summary()
    held = whole(current)  # the subscriber's snapshot row
    deltas.remember([current])
    for _ in range(300):
        changes: dict[str, Any] = {}
        if rng.random() < 0.9:
            changes['last_seq'] = (current.last_seq or 0) + 1
            changes['last_heartbeat_at'] = (current.last_heartbeat_at or 0) + 1.0
        if rng.random() < 0.1:
            changes['status'] = rng.choice(['online', 'offline', 'stale'])
        if rng.random() < 0.05:
            changes['tags'] = tuple(rng.sample(['lab', 'x', 'y'], rng.randint(0, 3)))
        if rng.random() < 0.05:
            changes['software_version'] = rng.choice(['2.0', '2.1', None])
        if rng.random() < 0.5:
            keys = rng.sample(sorted(RESOURCES), rng.randint(0, len(RESOURCES)))
            changes['resources'] = {k: rng.choice([1.0, 2.0, None]) for k in keys}
        if rng.random() < 0.2:
            changes['telemetry'] = {'cpu_percent': rng.choice([1.0, 2.0])}
        nxt = dataclasses.replace(current, **changes)
        rows = deltas.rows([nxt])
        update = orjson.loads(encode_update('update', 0.0, rows, []))
        for row in update['robots']:
            held = apply_delta(held, row)
        deltas.remember([nxt])
        current = nxt
        expected = whole(current)
        # A removed mapping entry is held as null: the same as an unknown reading.
        for name in ('resources', 'telemetry'):
            held[name] = {k: v for k, v in held[name].items() if v is not None}
            expected[name] = {k: v for k, v in expected[name].items() if v is not None}
        assert held == expected
