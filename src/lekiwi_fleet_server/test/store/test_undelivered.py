"""undelivered_messages: the backlog of a robot's current boot as the server sees it."""

from __future__ import annotations

from store_messages import T0, fleet_event, heartbeat, online, token_hash

from lekiwi_fleet_server.store.sql_store import SqlFleetStore


def test_backlog_is_the_seqs_below_the_newest_not_committed(store: SqlFleetStore) -> None:
    for robot in ('kiwi-a', 'kiwi-b'):
        store.enrol_robot(robot, token_hash(robot), (), now=T0)
    store.commit_batch([], [online('kiwi-a', T0), online('kiwi-b', T0)], now=T0)
    assert store.undelivered_messages() == {}
    # kiwi-a reconnects after a while offline: its newest heartbeat (seq 10) comes first,
    # then the backlog in order; kiwi-b sends without a backlog.
    store.commit_batch([fleet_event('kiwi-a', 'boot-a1', 1, T0, 'x.y', {}),
                        fleet_event('kiwi-a', 'boot-a1', 2, T0, 'x.y', {}),
                        heartbeat('kiwi-a', 'boot-a1', 10, T0 + 1),
                        heartbeat('kiwi-b', 'boot-b1', 1, T0 + 1)], now=T0 + 1)
    assert store.undelivered_messages() == {'kiwi-a': 7, 'kiwi-b': 0}
    store.commit_batch([fleet_event('kiwi-a', 'boot-a1', s, T0, 'x.y', {}) for s in range(3, 10)],
                       now=T0 + 2)
    assert store.undelivered_messages() == {'kiwi-a': 0, 'kiwi-b': 0}
    # A new boot starts afresh: the old boot's messages are not counted against it.
    store.commit_batch([heartbeat('kiwi-a', 'boot-a2', 3, T0 + 3)], now=T0 + 3)
    assert store.undelivered_messages()['kiwi-a'] == 2
