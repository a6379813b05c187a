"""Read models rebuilt by replaying the event log equal the ones projected as events came in."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from store_messages import T0, token_hash
from store_scenario import READ_MODELS, dump, run_scenario

from lekiwi_fleet_server.db.schema import projection_positions, timeline
from lekiwi_fleet_server.store import event_store, projections
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


def test_rebuild_by_replay_yields_identical_read_models(store: SqlFleetStore) -> None:
    run_scenario(store)
    before = dump(store.engine)
    assert len(before['timeline']) > 30 and len(before['teleop_sessions']) == 6
    with store.engine.connect() as conn:
        head = event_store.head_position(conn)
    assert {row[1] for row in before['projection_positions']} == {head}
    replayed = store.rebuild_projections()
    assert replayed == head
    assert dump(store.engine) == before


def test_a_projection_behind_the_log_catches_up_at_open(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(database_url)
    run_scenario(store)
    before = dump(store.engine, READ_MODELS)
    store.close()
    # Simulate a projection that missed events (e.g. one added by a later release).
    with store.engine.begin() as conn:
        conn.execute(sa.delete(timeline).where(timeline.c.position > 10))
        conn.execute(sa.update(projection_positions)
                     .where(projection_positions.c.name.in_(['timeline', 'robots']))
                     .values(position=10))
    reopened = make_store(database_url)
    assert dump(reopened.engine, READ_MODELS) == before


def _append_between_the_reads(monkeypatch: pytest.MonkeyPatch, append: Callable[[], None]) -> None:
    """Make `append` commit after catch_up's first read of the head or the positions."""
    done: list[bool] = []

    def once(read: Callable[[Connection], Any]) -> Callable[[Connection], Any]:
        def wrapped(conn: Connection) -> Any:
            value = read(conn)
            if not done:
                done.append(True)
                append()
            return value
        return wrapped

    monkeypatch.setattr(event_store, 'head_position', once(event_store.head_position))
    monkeypatch.setattr(projections, 'positions', once(projections.positions))


def test_a_store_opening_while_another_appends_replays_nothing(
        pg_url: str, make_store: Callable[..., SqlFleetStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A CLI command opening the store next to a running server: the server's append commits
    # between the opening store's two reads. Read in the wrong order it looked unprojected, and
    # replaying it inserted its timeline row twice (CI once failed on the UniqueViolation).
    running = make_store(pg_url)
    run_scenario(running)
    _append_between_the_reads(monkeypatch, lambda: running.enrol_robot(
        'echo', token_hash('echo'), ('fleet',), now=T0 + 100))
    opened = make_store(pg_url)
    with opened.engine.connect() as conn:
        head = event_store.head_position(conn)
        assert projections.positions(conn) == dict.fromkeys(projections.PROJECTIONS, head)
        rows = conn.execute(sa.select(sa.func.count()).select_from(timeline)).scalar_one()
    assert rows == head and opened.get_robot('echo', now=T0 + 101) is not None


def test_two_stores_catching_up_at_once_replay_the_log_once(
        pg_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    store = make_store(pg_url)
    run_scenario(store)
    before = dump(store.engine, READ_MODELS)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(timeline).where(timeline.c.position > 10))
        conn.execute(sa.update(projection_positions)
                     .where(projection_positions.c.name == 'timeline').values(position=10))
    with store.engine.connect() as first:
        first.begin()
        assert projections.catch_up(first, {}) > 0
        # The first holds the append lock until it commits: the second waits, then finds the
        # projections at the head.
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(_catch_up_alone, store.engine)
            time.sleep(0.3)
            assert not second.done()
            first.commit()
            assert second.result(timeout=10) == 0
    assert dump(store.engine, READ_MODELS) == before


def _catch_up_alone(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return projections.catch_up(conn, {})
