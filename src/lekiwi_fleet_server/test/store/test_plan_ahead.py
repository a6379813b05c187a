"""Planning the next batch while the current one is written (SqlFleetStore.plan_ahead).

The writer process plans batch N+1 while PostgreSQL runs batch N's statements; the plan assumes
N commits. These tests hold it to that: committed that way, a rich history leaves every table as
plain one-by-one commits do, and a plan made on a batch that then failed (or with anything
written in between) is never used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from store_messages import T0, heartbeat, online, token_hash
from store_scenario import READ_MODELS, dump, run_scenario

from lekiwi_fleet_server.store import ingest
from lekiwi_fleet_server.store.interface import BatchResult
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

TABLES = (*READ_MODELS, 'events', 'snapshots', 'robot_current', 'robot_sequences', 'telemetry')
BOOT = 'boot0001'


class Recorder:
    """Stands in for the store in run_scenario: records every call to replay it."""

    def __init__(self, store: SqlFleetStore) -> None:
        self.store = store
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return getattr(self.store, name)(*args, **kwargs)
        return call


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the plans made (ingest.plan_batch calls)."""
    made: list[int] = []
    real = ingest.plan_batch

    def counting(*args: Any, **kwargs: Any) -> ingest.BatchPlan:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, 'plan_batch', counting)
    return made


def test_committing_plans_made_ahead_leaves_every_table_as_one_by_one_commits_do(
        database_url: str, second_database_url: str,
        make_store: Callable[..., SqlFleetStore], plans: list[int]) -> None:
    one_by_one = make_store(database_url)
    recorder = Recorder(one_by_one)
    run_scenario(recorder)  # type: ignore[arg-type]
    expected = dump(one_by_one.engine, TABLES)

    ahead = make_store(second_database_url)
    plans.clear()
    commits = planned_ahead = 0
    calls = recorder.calls
    for i, (name, args, kwargs) in enumerate(calls):
        if name != 'commit_batch':
            getattr(ahead, name)(*args, **kwargs)
            continue
        commits += 1
        follower = calls[i + 1] if i + 1 < len(calls) else None

        def plan_next(_result: BatchResult, follower: Any = follower) -> None:
            nonlocal planned_ahead
            if follower is not None and follower[0] == 'commit_batch':
                messages, presence = (list(follower[1]) + [()])[:2]
                planned_ahead += ahead.plan_ahead(messages, presence, now=follower[2]['now'])

        ahead.commit_batch(*args, **kwargs, while_committing=plan_next)
    # Every commit was planned ahead but the first two: the first batch of messages brings
    # boots that the store has to look up in the database.
    assert planned_ahead == commits - 2
    assert len(plans) == commits  # ... and each plan made was the one committed
    assert dump(ahead.engine, TABLES) == expected


def enrolled(store: SqlFleetStore, *robots: str) -> SqlFleetStore:
    for robot in robots:
        store.enrol_robot(robot, token_hash(robot), (), now=T0)
    store.commit_batch([heartbeat(r, BOOT, 1, T0) for r in robots],
                       [online(r, T0) for r in robots], now=T0)
    return store


def test_a_plan_made_on_a_batch_that_failed_is_not_used(
        store: SqlFleetStore, plans: list[int]) -> None:
    enrolled(store, 'kiwi')
    first = [heartbeat('kiwi', BOOT, 2, T0 + 1)]
    second = [heartbeat('kiwi', BOOT, 3, T0 + 2)]

    def plan_then_fail(_result: BatchResult) -> None:
        assert store.plan_ahead(second, now=T0 + 2)
        raise RuntimeError('the commit failed')  # after the statements were sent

    with pytest.raises(RuntimeError):
        store.commit_batch(first, now=T0 + 1, while_committing=plan_then_fail)
    plans.clear()
    result = store.commit_batch(second, now=T0 + 2)
    assert len(plans) == 1  # planned afresh: seq 2 never committed
    assert [k.seq for k in result.acknowledged] == [3] and result.duplicates == 0
    assert [c.ranges for c in store.robot_sequences('kiwi').values()] == [((1, 1), (3, 3))]


def test_a_write_in_between_or_another_batch_makes_the_plan_void(
        store: SqlFleetStore, plans: list[int]) -> None:
    enrolled(store, 'kiwi')
    second = [heartbeat('kiwi', BOOT, 3, T0 + 2)]
    store.commit_batch([heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 1,
                       while_committing=lambda _: store.plan_ahead(second, now=T0 + 2))
    store.revoke_robot('kiwi', now=T0 + 1.5)
    plans.clear()
    store.commit_batch(second, now=T0 + 2)
    assert len(plans) == 1  # planned again, on the revoked robot's state
    # A plan is for the batch it was made of, not for an equal one.
    enrolled(store, 'kiwi2')
    nxt = [heartbeat('kiwi2', BOOT, 3, T0 + 4)]
    store.commit_batch([heartbeat('kiwi2', BOOT, 2, T0 + 3)], now=T0 + 3,
                       while_committing=lambda _: store.plan_ahead(nxt, now=T0 + 4))
    plans.clear()
    store.commit_batch(list(nxt), now=T0 + 4)
    assert len(plans) == 1


def test_nothing_is_planned_ahead_that_needs_the_database_first(store: SqlFleetStore) -> None:
    enrolled(store, 'kiwi')
    answers: list[bool] = []

    def try_ahead(_result: BatchResult) -> None:
        answers.append(store.plan_ahead([heartbeat('ghost', BOOT, 1, T0 + 2)], now=T0 + 2))
        answers.append(store.plan_ahead([heartbeat('kiwi', 'newboot', 1, T0 + 2)], now=T0 + 2))
        answers.append(store.plan_ahead([heartbeat('kiwi', BOOT, 3, T0 + 2)], now=T0 + 2))

    store.commit_batch([heartbeat('kiwi', BOOT, 2, T0 + 1)], now=T0 + 1,
                       while_committing=try_ahead)
    # An unknown robot and a boot not in memory need a look-up; the known boot does not.
    assert answers == [False, False, True]
    # Outside a commit there is nothing to plan on top of.
    assert not store.plan_ahead([heartbeat('kiwi', BOOT, 3, T0 + 2)], now=T0 + 2)
