"""The SQL status expression agrees with robot_status() at every moment, on both databases."""

from __future__ import annotations

import pytest
from store_messages import T0, heartbeat, offline, online, token_hash

from lekiwi_fleet_server.domain.robot_state import robot_status
from lekiwi_fleet_server.store.interface import RobotFilter
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

# robot -> (online at the end, last presence change, last heartbeat)
FACTS = {
    'never': (False, None, None),
    'beating': (True, T0, T0 + 1),
    'silent': (True, T0, None),
    'gone': (False, T0 + 2, T0 + 1),
    'back': (True, T0 + 8, T0 + 1),
}


@pytest.mark.parametrize('now', [T0 + 1, T0 + 3, T0 + 5.5, T0 + 6.5, T0 + 9, T0 + 14, T0 + 40])
def test_sql_status_matches_the_domain_rule(store: SqlFleetStore, now: float) -> None:
    for robot in FACTS:
        store.enrol_robot(robot, token_hash(robot), (), now=T0)
    store.commit_batch([], [online(r, T0) for r in ('beating', 'silent', 'gone', 'back')],
                       now=T0)
    store.commit_batch([heartbeat(r, 'boot0001', 1, T0 + 1) for r in ('beating', 'gone',
                                                                       'back')], now=T0 + 1)
    store.commit_batch([], [offline('gone', T0 + 2), offline('back', T0 + 2)], now=T0 + 2)
    store.commit_batch([], [online('back', T0 + 8)], now=T0 + 8)
    stale = store.config.stale_after_s
    expected = {r: robot_status(o, p, h, now=now, stale_after_s=stale)
                for r, (o, p, h) in FACTS.items()}
    got = {r.robot_id: r.status for r in store.list_robots(RobotFilter(), now=now)}
    assert got == expected
    for status in set(expected.values()):
        filtered = store.list_robots(RobotFilter(status=status), now=now)
        assert {r.robot_id for r in filtered} == {r for r, s in expected.items() if s == status}
    counts = store.fleet_summary(now=now).by_status
    assert all(counts[s] == list(expected.values()).count(s) for s in counts)
