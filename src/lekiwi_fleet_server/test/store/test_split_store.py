"""SplitStore: reads on the local store, every write through the writer's call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from store_messages import T0, heartbeat, token_hash

from lekiwi_fleet_server.store.interface import RobotFilter
from lekiwi_fleet_server.store.split_store import SplitStore
from lekiwi_fleet_server.store.sql_store import SqlFleetStore


class Writer:
    """Runs the calls on a store of its own (as the writer process does) and records them."""

    def __init__(self, store: SqlFleetStore) -> None:
        self.store = store
        self.calls: list[str] = []
        self.closed = False

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(method)
        return getattr(self.store, method)(*args, **kwargs)


def test_writes_go_to_the_writer_and_reads_stay_local(
        database_url: str, make_store: Callable[..., SqlFleetStore]) -> None:
    writer = Writer(make_store(database_url))
    reader = SqlFleetStore.open(database_url, migrate=False, preload=False)
    closed: list[bool] = []
    split = SplitStore(reader, writer.call, on_close=lambda: closed.append(True))
    summary = split.enrol_robot('kiwi', token_hash('kiwi'), ['lab'], now=T0)
    assert summary.tags == ('lab',)
    split.create_operator('ada', 'admin', token_hash('ada'), now=T0)
    result = split.commit_batch([heartbeat('kiwi', 'boot0001', 1, T0 + 1)], now=T0 + 1)
    assert len(result.acknowledged) == 1
    split.maintain(now=T0 + 1)
    assert split.mark_all_offline(now=T0 + 2) == 0
    split.revoke_robot('kiwi', now=T0 + 3)
    assert writer.calls == ['enrol_robot', 'create_operator', 'commit_batch', 'maintain',
                            'mark_all_offline', 'revoke_robot']
    # Reads: what the writer committed, through the reader's own connections.
    assert split.robot_credentials('kiwi').revoked  # type: ignore[union-attr]
    assert split.operator_by_token(token_hash('ada')).name == 'ada'  # type: ignore[union-attr]
    assert [r.robot_id for r in split.list_robots(RobotFilter(), now=T0 + 3)] == ['kiwi']
    assert split.get_robot('kiwi', now=T0 + 3).last_seq == 1  # type: ignore[union-attr]
    assert len(split.robot_timeline('kiwi', 0, 10).events) >= 2
    assert split.fleet_summary(now=T0 + 3).total == 1
    assert split.fleet_timeline(0, 10).entries
    assert split.teleop_sessions('kiwi') == []
    assert split.robot_sequences('kiwi')['boot0001'].ranges == ((1, 1),)
    assert split.telemetry_range('kiwi', T0, T0 + 60, 60.0) == []
    split.ping()
    assert writer.calls[-1] == 'ping'
    split.close()
    assert closed == [True]
