"""The deployments' event log and read model on both databases: append, replay, conflicts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.domain import events as ev
from lekiwi_fleet_server.domain.rollout import Rollout
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store.deployments import DeploymentStore
from lekiwi_fleet_server.store.interface import ConcurrencyConflict


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def created() -> ev.DeploymentCreated:
    return ev.DeploymentCreated('', deployment_id='d1', release_version='2', manifest_sha256='a',
                                robots=('r1', 'r2'), waves=(0.5, 1.0), at=1.0)


def test_append_replays_to_the_same_state_and_the_read_model_follows(engine: Engine) -> None:
    store = DeploymentStore(engine)
    rollout = Rollout()
    store.append(rollout, [created()], now=1.0)
    decided = rollout.decide(2.0, lambda r: True, lambda r: False)
    store.append(rollout, decided, now=2.0)
    store.append(rollout, rollout.decide(2.0, lambda r: True, lambda r: False), now=2.0)
    store.append(rollout, [ev.RobotUpdateSucceeded('r1', deployment_id='d1',
                                                   release_version='2', previous_version='1')],
                 now=3.0)
    loaded = store.load('d1')
    assert loaded is not None
    assert loaded.version == rollout.version == 4
    assert {r: p.state for r, p in loaded.robots.items()} == {'r1': 'succeeded', 'r2': 'pending'}
    assert [type(e).__name__ for e in store.events('d1')][:2] == ['DeploymentCreated',
                                                                  'WaveStarted']
    assert store.active_ids() == ['d1']
    assert store.list()[0]['status'] == 'running' and store.list()[0]['stream_version'] == 4
    assert store.load('nope') is None


def test_a_stale_writer_conflicts_and_keeps_the_stored_state(engine: Engine) -> None:
    store = DeploymentStore(engine)
    first = Rollout()
    store.append(first, [created()], now=1.0)
    second = store.load('d1')
    assert second is not None
    store.append(first, [ev.DeploymentPaused('', deployment_id='d1', reason='x')], now=2.0)
    with pytest.raises(ConcurrencyConflict):
        store.append(second, [ev.DeploymentAbortRequested('', deployment_id='d1', by='o')],
                     now=2.0)
    assert second.status == 'paused'  # reloaded from what is stored
    reloaded = store.load('d1')
    assert reloaded is not None and reloaded.status == 'paused'
