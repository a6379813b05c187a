"""The flag engine at scale: idle ticks skip the fleet, waves of deliveries, held robots only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from lekiwi_fleet_server.domain.protocol import CommandResponse
from lekiwi_fleet_server.flags.engine import FlagEngine
from lekiwi_fleet_server.store.flags import FlagStore


class Fleet:
    """The read model's side the engine uses: it counts how often the fleet is listed."""

    def __init__(self, n: int) -> None:
        self.robots = [SimpleNamespace(robot_id=f'kiwi-{i:04d}', tags=['lab'], state='online',
                                       boot_id='boot-1', telemetry={}, resources={},
                                       revoked=False) for i in range(n)]
        self.listings = 0

    def list_robots(self, _filter: Any, *, now: float) -> list[Any]:
        self.listings += 1
        return self.robots


class Gateway:
    """Every robot connected; a configure is answered as the agent does, after a moment."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    def is_connected(self, _robot_id: str) -> bool:
        return True

    async def send_command(self, robot_id: str, command_type: str, payload_json: str, *,
                           timeout_s: float) -> CommandResponse:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        payload = orjson.loads(payload_json)
        report = orjson.dumps({'revision': payload['revision'], 'flags': payload['flags'],
                               'applied': [], 'failed': []}).decode()
        return CommandResponse(f'cmd-{robot_id}', True, True, report, {})


def make(engine: Engine, fleet: Fleet, gateway: Gateway, **kw: Any) -> FlagEngine:
    return FlagEngine(FlagStore(engine), fleet, gateway, now=time.time, tick_s=0.02, **kw)


async def run_for(flag_engine: FlagEngine, seconds: float) -> None:
    await flag_engine.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await flag_engine.stop()


def test_a_fleet_reconnecting_at_once_is_configured_in_waves_and_stored_in_batches(
        sqlite_engine: Engine) -> None:
    fleet, gateway = Fleet(1200), Gateway()
    store = FlagStore(sqlite_engine)
    batches: list[int] = []
    record = store.record_deliveries
    store.record_deliveries = lambda b: (batches.append(len(b)), record(b))[1]  # type: ignore
    flag_engine = FlagEngine(store, fleet, gateway, now=time.time, tick_s=0.02,
                             max_sending=300)

    async def until_delivered() -> None:
        await flag_engine.start()
        try:
            for _ in range(500):
                if len(store.deliveries()) == 1200:
                    break
                await asyncio.sleep(0.02)
        finally:
            await flag_engine.stop()

    asyncio.run(until_delivered())
    assert gateway.calls == 1200 and gateway.most_in_flight <= 300
    assert sum(batches) == 1200 and len(batches) < 120  # many deliveries per transaction
    assert all(d.accepted for d in store.deliveries().values())
    assert all(flag_engine.delivery(r.robot_id) is not None for r in fleet.robots)


def test_an_idle_engine_lists_the_fleet_only_every_few_ticks(sqlite_engine: Engine) -> None:
    fleet, gateway = Fleet(50), Gateway()
    asyncio.run(run_for(make(sqlite_engine, fleet, gateway, idle_ticks=10), 1.0))
    # About 50 ticks in a second: the first few deliver (a listing each), then one in ten.
    idle = fleet.listings
    assert gateway.calls == 50 and 2 <= idle <= 16


def test_a_flag_with_guards_is_measured_every_tick(sqlite_engine: Engine) -> None:
    fleet, gateway = Fleet(50), Gateway()
    flag_engine = make(sqlite_engine, fleet, gateway, idle_ticks=10)

    async def with_guarded_flag() -> None:
        await flag_engine.start()
        try:
            await flag_engine.create({'name': 'uplink_transport', 'kind': 'variant',
                                      'default': 'websocket',
                                      'variants': ['websocket', 'polling'],
                                      'guards': [{'metric': 'error_rate', 'above': 0.5,
                                                  'action': 'off'}]}, step=0, by='olga')
            fleet.listings = 0
            await asyncio.sleep(1.0)
        finally:
            await flag_engine.stop()

    asyncio.run(with_guarded_flag())
    assert fleet.listings >= 12  # about 50 ticks, each one listing the fleet


def test_only_the_robots_whose_claim_this_gateway_holds_are_configured(
        sqlite_engine: Engine) -> None:
    fleet, gateway = Fleet(10), Gateway()  # a session here for every robot
    asked: list[list[str]] = []
    held_elsewhere = {'kiwi-0003', 'kiwi-0007'}  # their new gateway's claim came first

    async def held_here(robot_ids: Sequence[str]) -> set[str]:
        asked.append(list(robot_ids))
        return set(robot_ids) - held_elsewhere

    store = FlagStore(sqlite_engine)
    flag_engine = FlagEngine(store, fleet, gateway, now=time.time, tick_s=0.02,
                             held_here=held_here)
    asyncio.run(run_for(flag_engine, 0.5))
    assert gateway.calls == 8
    assert set(store.deliveries()) == {r.robot_id for r in fleet.robots} - held_elsewhere
    assert all(held_elsewhere <= set(ids) for ids in asked)  # asked again, never sent


def test_nothing_is_configured_while_the_holders_are_unknown(sqlite_engine: Engine) -> None:
    fleet, gateway = Fleet(5), Gateway()

    async def held_here(robot_ids: Sequence[str]) -> set[str]:
        raise ConnectionError('redis: connection refused')

    flag_engine = FlagEngine(FlagStore(sqlite_engine), fleet, gateway, now=time.time, tick_s=0.02,
                             held_here=held_here)
    asyncio.run(run_for(flag_engine, 0.3))
    assert gateway.calls == 0
