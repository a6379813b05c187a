"""Guards and plans are the fleet's: one process measures them, and its gates count every
gateway's deliveries (two flag engines on one database, each holding half of the robots)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from test_flag_engine_load import Fleet, Gateway

from lekiwi_fleet_server.domain.flags import bucket
from lekiwi_fleet_server.flags.engine import FlagEngine
from lekiwi_fleet_server.store.flags import FlagStore

FLAG = 'agent_uplink'
STEPS = [50.0, 100.0]


class HalfGateway(Gateway):
    """Holds the robots whose number has the given parity."""

    def __init__(self, parity: int) -> None:
        super().__init__()
        self.parity = parity

    def is_connected(self, robot_id: str) -> bool:
        return int(robot_id.rsplit('-', 1)[1]) % 2 == self.parity


async def held_here(robot_ids: Sequence[str]) -> set[str]:
    return set(robot_ids)  # the registry agrees: each robot's session is where its claim is


def engine_of(sqlite_engine: Engine, fleet: Fleet, gateway: Gateway, *,
              measuring: bool) -> FlagEngine:
    engine = FlagEngine(FlagStore(sqlite_engine), fleet, gateway, now=time.time, tick_s=0.05,
                        held_here=held_here, gate_refresh_s=0.1)
    engine.measuring = measuring
    return engine


async def migrate(leader: FlagEngine, other: FlagEngine, seconds: float) -> Any:
    await leader.start()
    await other.start()
    try:
        await leader.create({'name': FLAG, 'default': False, 'steps': STEPS,
                             'rules': [{'value': True, 'staged': True}]}, step=0, by='olga')
        await leader.plan(FLAG, 'set', by='olga', soak_s=0.3, min_applied=1.0)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and leader.get(FLAG).flag.step == 0:
            await asyncio.sleep(0.05)
        return leader.get(FLAG)
    finally:
        await other.stop()
        await leader.stop()


def test_a_plan_gate_counts_the_robots_another_gateway_configured(
        sqlite_engine: Engine) -> None:
    fleet = Fleet(20)
    cohort = [r.robot_id for r in fleet.robots if bucket(FLAG, r.robot_id) < STEPS[0]]
    # The first step's cohort has robots on both gateways: neither alone has all of it.
    assert {int(r[-4:]) % 2 for r in cohort} == {0, 1}
    here, there = HalfGateway(0), HalfGateway(1)
    leader = engine_of(sqlite_engine, fleet, here, measuring=True)
    other = engine_of(sqlite_engine, fleet, there, measuring=False)
    state = asyncio.run(migrate(leader, other, 10.0))
    assert state.flag.step == 1, 'the plan waited for robots configured by the other gateway'
    assert here.calls > 0 and there.calls > 0
    reasons = [r.event.reason for r in leader.store.events(FLAG)
               if r.event.TYPE == 'FlagStepAdvanced']
    assert reasons and f'{len(cohort)}/{len(cohort)} robots applied' in reasons[0]


def test_only_the_measuring_process_advances_a_plan(sqlite_engine: Engine) -> None:
    fleet = Fleet(20)
    # Neither measures: the plan never advances, though every robot applied the flag.
    first = engine_of(sqlite_engine, fleet, HalfGateway(0), measuring=False)
    second = engine_of(sqlite_engine, fleet, HalfGateway(1), measuring=False)
    state = asyncio.run(migrate(first, second, 1.5))
    assert state.flag.step == 0
    assert len(first.store.deliveries()) == 20
    # The lease's duty turns measuring on, and the plan moves at once.
    fresh = engine_of(sqlite_engine, fleet, HalfGateway(0), measuring=False)

    async def lead() -> int:
        await fresh.start()
        try:
            await fresh.measuring_duty().start()
            for _ in range(100):
                if fresh.get(FLAG).flag.step == 1:
                    break
                await asyncio.sleep(0.05)
            return fresh.get(FLAG).flag.step
        finally:
            await fresh.measuring_duty().stop()
            await fresh.stop()

    assert asyncio.run(lead()) == 1
    assert not fresh.measuring
