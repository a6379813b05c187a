"""The flags' event log, read model and deliveries on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.db.engine import make_engine
from lekiwi_fleet_server.domain import flag_events as fe
from lekiwi_fleet_server.domain.flags import Flag, FlagError, Guard, Rule
from lekiwi_fleet_server.migrations import upgrade
from lekiwi_fleet_server.store.flags import Delivery, FlagStore
from lekiwi_fleet_server.store.interface import ConcurrencyConflict


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def transport() -> Flag:
    return Flag('uplink_transport', kind='variant', default='websocket',
                variants=('websocket', 'polling'),
                rules=(Rule('polling', tags=('lab',), staged=True),),
                guards=(Guard('error_rate', 0.05, 'off'),),
                parameters=('fleet_uplink:transport',))


def created(flag: Flag, at: float = 1.0) -> fe.FlagCreated:
    return fe.FlagCreated('', flag=flag.name, definition=fe.flag_to_dict(flag), at=at)


def test_appends_replay_to_the_read_model_with_who_made_each_change(engine: Engine) -> None:
    store = FlagStore(engine)
    state = store.append(None, 'uplink_transport', [created(transport())], actor='olga', now=1.0)
    state = store.append(state, 'uplink_transport', [fe.FlagStepAdvanced(
        '', flag='uplink_transport', step=1, percentage=25.0, reason='by hand', at=2.0)],
        actor='cli:root', now=2.0)
    state = store.append(state, 'uplink_transport', [fe.FlagGuardTripped(
        '', flag='uplink_transport', guard=0, metric='error_rate', above=0.05, observed=0.2,
        action='off', step=-1, cohort=3, at=3.0)], actor='guard', now=3.0)
    assert state.version == 3 and state.flag.step == -1 and state.flag.percentage == 0.0
    loaded = store.load('uplink_transport')
    assert loaded == state
    assert [(e.version, type(e.event).__name__, e.actor) for e in
            store.events('uplink_transport')] == [
        (1, 'FlagCreated', 'olga'), (2, 'FlagStepAdvanced', 'cli:root'),
        (3, 'FlagGuardTripped', 'guard')]
    [row] = store.list()
    assert row['name'] == 'uplink_transport' and row['step'] == -1
    assert row['percentage'] == 0.0 and row['stream_version'] == 3
    assert row['created_by'] == 'olga' and row['updated_by'] == 'guard'
    assert row['definition']['parameters'] == ['fleet_uplink:transport']
    assert store.load('nope') is None


def test_a_stale_writer_conflicts_and_nothing_of_it_is_stored(engine: Engine) -> None:
    store = FlagStore(engine)
    first = store.append(None, 'f', [created(Flag('f'))], actor='a', now=1.0)
    store.append(first, 'f', [fe.FlagDeleted('', flag='f', at=2.0)], actor='a', now=2.0)
    with pytest.raises(ConcurrencyConflict):
        store.append(first, 'f', [fe.FlagStepAdvanced('', flag='f', step=1)], actor='b', now=3.0)
    with pytest.raises(ConcurrencyConflict):  # two creators of one name: one wins
        store.append(None, 'f', [created(Flag('f'))], actor='b', now=3.0)
    assert [e.actor for e in store.events('f')] == ['a', 'a']
    assert store.list() == [] and store.list(include_deleted=True)[0]['deleted'] is True


def test_an_event_that_cannot_follow_is_refused_before_writing(engine: Engine) -> None:
    store = FlagStore(engine)
    with pytest.raises(FlagError):
        store.append(None, 'f', [fe.FlagDeleted('', flag='f')], actor='a', now=1.0)
    assert store.events('f') == []


def test_the_read_model_is_rebuilt_from_the_log(engine: Engine) -> None:
    store = FlagStore(engine)
    state = store.append(None, 'a', [created(Flag('a'))], actor='x', now=1.0)
    store.append(state, 'a', [fe.FlagPlanSet('', flag='a', soak_s=60.0, min_applied=0.9)],
                 actor='x', now=2.0)
    store.append(None, 'b', [created(Flag('b'))], actor='y', now=1.0)
    before = store.list()
    assert store.rebuild() == 2
    assert store.list() == before
    assert before[0]['plan'] == {'soak_s': 60.0, 'min_applied': 0.9, 'paused': False,
                                 'reason': ''}


def test_deliveries_keep_each_robots_latest(engine: Engine) -> None:
    store = FlagStore(engine)
    store.record_delivery(Delivery('r1', 'b1', 'rev1', {'f': True}, True, [], 'ok', 1.0))
    store.record_delivery(Delivery('r1', 'b2', 'rev2', {'f': False}, False, [{'x': 1}],
                                   'no', 2.0))
    store.record_delivery(Delivery('r2', 'b1', 'rev1', {}, True, [], '', 1.0))
    found = store.deliveries()
    assert set(found) == {'r1', 'r2'}
    assert found['r1'].revision == 'rev2' and found['r1'].applied == [{'x': 1}]
    assert found['r1'].accepted is False and found['r1'].boot_id == 'b2'


def test_a_batch_of_deliveries_is_stored_at_once_and_replaces_each_robots_row(
        engine: Engine) -> None:
    store = FlagStore(engine)
    store.record_delivery(Delivery('r0', 'b0', 'old', {'f': True}, False, [], 'no', 1.0))
    batch = [Delivery(f'r{i}', 'b1', 'rev1', {}, True, [], 'ok', 2.0) for i in range(1200)]
    batch.append(Delivery('r7', 'b2', 'rev2', {'f': False}, True, [], 'again', 3.0))
    store.record_deliveries(batch)
    found = store.deliveries()
    assert len(found) == 1200  # more robots than one statement's chunk, each once
    assert found['r0'].revision == 'rev1' and found['r0'].accepted is True
    assert found['r7'].revision == 'rev2' and found['r7'].boot_id == 'b2'  # the last one wins
    store.record_deliveries([])
    assert len(store.deliveries()) == 1200
