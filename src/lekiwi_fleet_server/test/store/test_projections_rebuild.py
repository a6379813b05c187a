"""Read models rebuilt by replaying the event log equal the ones projected as events came in."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from store_scenario import READ_MODELS, dump, run_scenario

from lekiwi_fleet_server.db.schema import projection_positions, timeline
from lekiwi_fleet_server.store import event_store
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
