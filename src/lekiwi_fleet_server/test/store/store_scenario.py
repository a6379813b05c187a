"""A rich history of a small fleet for the equivalence tests, and table dumps to compare."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from store_messages import (
    T0,
    deployment,
    fleet_event,
    heartbeat,
    offline,
    online,
    session_ended,
    session_started,
    telemetry,
    teleop_status,
    token_hash,
)

from lekiwi_fleet_server.db.schema import metadata
from lekiwi_fleet_server.store.interface import RobotMessage
from lekiwi_fleet_server.store.sql_store import SqlFleetStore

READ_MODELS = ('robots', 'robot_tags', 'teleop_sessions', 'timeline', 'projection_positions')
ROBOTS = ('alpha', 'bravo', 'charlie', 'delta')


def run_scenario(store: SqlFleetStore, rounds: int = 6) -> list[list[RobotMessage]]:
    """Enrol, connect, heartbeat, telemetry, sessions, alarms, deployments, revoke, restart.

    Return the message batches it committed (to redeliver them).
    """
    batches: list[list[RobotMessage]] = []
    for i, robot in enumerate(ROBOTS):
        store.enrol_robot(robot, token_hash(robot), ('fleet', f'group-{i % 2}'), now=T0)
    t = T0 + 1
    seq = dict.fromkeys(ROBOTS, 0)

    def nxt(robot: str) -> int:
        seq[robot] += 1
        return seq[robot]

    store.commit_batch([], [online(r, t) for r in ROBOTS], now=t)
    for n in range(rounds):
        t += 1
        msgs = []
        for i, robot in enumerate(ROBOTS):
            battery = 50.0 - 15 * (n % 3) if i % 2 == 0 else 90.0
            software = '1.0.0' if n < rounds // 2 else '1.1.0'
            msgs.append(heartbeat(robot, 'boot0001', nxt(robot), t, software=software,
                                  res={'battery_percent': battery,
                                       'temperature_c': 70.0 + 5 * (n % 4)}))
            msgs.append(telemetry(robot, 'boot0001', nxt(robot), t, n + 1, 1,
                                  {'cpu_percent': float(n), 'battery_percent': battery},
                                  full=n == 0))
            msgs.append(teleop_status(robot, 'boot0001', nxt(robot), t, active=n % 2 == 1,
                                      score=0.2 + 0.1 * n))
        msgs.append(session_started('alpha', 'boot0001', nxt('alpha'), t, f'sess-{n}'))
        if n % 2:
            msgs.append(session_ended('alpha', 'boot0001', nxt('alpha'), t + 0.5, f'sess-{n}',
                                      t))
        msgs.append(fleet_event('bravo', 'boot0001', nxt('bravo'), t, 'motor.stall',
                                {'wheel': n}, severity=3))
        msgs.append(deployment('charlie', 'boot0001', nxt('charlie'), t, phase=min(n + 1, 6)))
        presence = [offline('delta', t, 'timeout')] if n == 2 else (
            [online('delta', t)] if n == 4 else [])
        store.commit_batch(msgs, presence, now=t)
        batches.append(msgs)
    store.revoke_robot('delta', now=t + 1)
    store.mark_all_offline(now=t + 2)
    return batches


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def dump(engine: Engine, tables: tuple[str, ...] = READ_MODELS) -> dict[str, list[tuple]]:
    """Return every row of `tables`, normalised and sorted, to compare table contents."""
    out = {}
    with engine.connect() as conn:
        for name in tables:
            table = metadata.tables[name]
            rows = conn.execute(sa.select(table)).all()
            out[name] = sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)
    return out
