"""Issue 14: admin writes from another process never meet a stale cache; a revoked robot's
frames are refused by the batch plan; token rotation and re-enrolment are events with who."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from store_messages import T0, heartbeat, token_hash

from lekiwi_fleet_server.store import changes
from lekiwi_fleet_server.store.interface import RobotAlreadyEnrolled, RobotRevoked, UnknownRobot
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

BOOT = 'boot0001'


def test_writes_of_another_process_leave_no_stale_cache(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    server = make_store(database_url)  # the server's writer, which remembers its robots
    server.enrol_robot('kiwi-1', token_hash('a'), (), now=T0)
    assert server.commit_batch([heartbeat('kiwi-1', BOOT, 1, T0 + 1)], now=T0 + 1).acknowledged
    cli = make_store(database_url)  # the CLI, writing straight to the database
    cli.revoke_robot('kiwi-1', now=T0 + 2)
    # The server's own revoke (REST) after the CLI's: no ConcurrencyConflict (it was a 500).
    server.revoke_robot('kiwi-1', now=T0 + 3)
    cli.reenrol_robot('kiwi-1', token_hash('b'), ('lab',), by='cli:test', now=T0 + 4)
    server.rotate_robot_token('kiwi-1', token_hash('c'), by='ada', now=T0 + 5)
    assert server.robot_credentials('kiwi-1').token_sha256 == token_hash('c')
    types = [(e.type, e.data.get('by')) for e in server.robot_timeline('kiwi-1', 0, 20).events
             if e.type != 'RobotVersionChanged']
    assert types == [('RobotEnrolled', None), ('RobotTokenRevoked', None),
                     ('RobotReEnrolled', 'cli:test'), ('RobotTokenRotated', 'ada')]
    assert server.get_robot('kiwi-1', now=T0 + 6).tags == ('lab',)


def test_a_revoked_robot_s_frames_are_refused_once_the_writer_forgets(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    server = make_store(database_url)
    server.enrol_robot('kiwi-1', token_hash('a'), (), now=T0)
    server.commit_batch([heartbeat('kiwi-1', BOOT, 1, T0 + 1)], now=T0 + 1)
    make_store(database_url).revoke_robot('kiwi-1', now=T0 + 2)
    server.forget_robots(['kiwi-1'])  # what the change watcher makes the gateway do
    result = server.commit_batch([heartbeat('kiwi-1', BOOT, 2, T0 + 3)], now=T0 + 3)
    assert not result.acknowledged
    assert 'revoked' in result.rejected[0].reason


def test_rotate_and_reenrol_refuse_what_does_not_fit(store: SqlFleetStore) -> None:
    with pytest.raises(UnknownRobot):
        store.rotate_robot_token('ghost', token_hash('x'), by='ada', now=T0)
    with pytest.raises(UnknownRobot):
        store.reenrol_robot('ghost', token_hash('x'), (), by='ada', now=T0)
    store.enrol_robot('kiwi-1', token_hash('a'), (), now=T0)
    with pytest.raises(RobotAlreadyEnrolled):  # not revoked: rotate instead
        store.reenrol_robot('kiwi-1', token_hash('b'), (), by='ada', now=T0 + 1)
    store.revoke_robot('kiwi-1', now=T0 + 2)
    with pytest.raises(RobotRevoked):
        store.rotate_robot_token('kiwi-1', token_hash('b'), by='ada', now=T0 + 3)
    with pytest.raises(RobotAlreadyEnrolled, match='re-enrol'):
        store.enrol_robot('kiwi-1', token_hash('b'), (), now=T0 + 3)


def test_the_watcher_delivers_changes_made_by_another_store(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    make_store(database_url)  # migrated
    seen: list[tuple[str, str]] = []
    arrived = threading.Event()

    def on_change(kind: str, key: str) -> None:
        seen.append((kind, key))
        arrived.set()

    watcher = changes.watcher_for(database_url, on_change)
    assert watcher is not None
    watcher.start()
    try:
        other = make_store(database_url)
        started = time.monotonic()
        other.enrol_robot('kiwi-7', token_hash('a'), (), now=time.time())
        assert arrived.wait(5.0)
        assert time.monotonic() - started < 1.0
        assert ('robot', 'kiwi-7') in seen
        arrived.clear()
        other.revoke_robot('kiwi-7', now=time.time())
        assert arrived.wait(5.0)
        assert seen.count(('robot', 'kiwi-7')) == 2
    finally:
        watcher.stop()
