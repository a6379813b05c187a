"""Store ingest benchmark: how long SqlFleetStore.commit_batch takes per gateway batch.

The gateway commits every 50 ms; at 10,000 robots sending 1 Hz heartbeats a batch holds about
500 heartbeats (and as many telemetry deltas). This script enrols the robots in a fresh
database, then times batches of each kind for a bounded number of rounds and prints p50/p99/max
latency and messages per second:
- hb:     500 heartbeats of 500 robots (current state only, no events)
- mixed:  500 heartbeats + 500 telemetry deltas (history rows)
- events: 500 heartbeats + 25 robot FleetEvents (events, projections, timeline)

    python tests/bench/store_ingest.py                        # PostgreSQL and SQLite
    python tests/bench/store_ingest.py --db postgresql --robots 10000 --rounds 100

The last line sums up PostgreSQL (or the only database run) as key=value pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'src' / 'lekiwi_fleet_server'))  # the source tree, not install/

import sqlalchemy as sa  # noqa: E402
from gateway import base_url, drop_database, libpq  # noqa: E402  (this folder: as the gateway bench)
from sqlalchemy.engine import make_url  # noqa: E402

from lekiwi_fleet_server.domain import topics  # noqa: E402
from lekiwi_fleet_server.store.interface import PresenceChange, RobotMessage  # noqa: E402
from lekiwi_fleet_server.store.sql_store import SqlFleetStore  # noqa: E402

BOOT = 'benchboot01'
T0 = 1_764_190_000.0
RESOURCES = {'cpu_percent': 12.5, 'load_average_1min': 0.4, 'memory_used_bytes': 512 << 20,
             'memory_total_bytes': 4096 << 20, 'disk_used_bytes': 10 << 30,
             'disk_total_bytes': 64 << 30, 'temperature_c': 48.0, 'battery_voltage_v': 12.1,
             'battery_percent': 80.0, 'network_tx_bytes_per_s': 900.0,
             'network_rx_bytes_per_s': 300.0, 'uptime_s': 1234.0}


def stamp(t: float) -> dict:
    return {'stamp': {'sec': int(t), 'nanosec': int((t % 1) * 1e9)}, 'frame_id': ''}


def heartbeat(robot: str, seq: int, t: float) -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot, 'agent_version': '0.1.0',
           'software_version': '1.0.0', 'boot_id': BOOT, 'sequence': seq, 'state': 2,
           'teleop_active': False, 'teleop_score': 0.0,
           'resources': {**RESOURCES, 'cpu_percent': float(seq % 100)}}
    return RobotMessage(robot, BOOT, seq, topics.HEARTBEAT, msg, t)


def delta(robot: str, seq: int, sequence: int, t: float) -> RobotMessage:
    full = sequence == 1
    names = list(RESOURCES) if full else ['cpu_percent', 'network_tx_bytes_per_s']
    values = [float(RESOURCES[n]) for n in names] if full else [float(sequence % 100), 1000.0]
    msg = {'header': stamp(t), 'robot_id': robot, 'boot_id': BOOT, 'sequence': sequence,
           'base_sequence': 1, 'full_snapshot': full, 'field_names': names,
           'field_values': values}
    return RobotMessage(robot, BOOT, seq, topics.TELEMETRY, msg, t)


def event(robot: str, seq: int, t: float) -> RobotMessage:
    msg = {'header': stamp(t), 'robot_id': robot, 'boot_id': BOOT, 'sequence': seq,
           'severity': 1, 'event_type': 'bench.tick', 'payload_json': '{"n": 1}'}
    return RobotMessage(robot, BOOT, seq, topics.EVENTS, msg, t)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(url: str, label: str, robots: int, batch: int, rounds: int,
        budget_s: float) -> dict[str, float]:
    """Enrol, then time each batch kind; return the figures."""
    store = SqlFleetStore.open(url)
    ids = [f'bench-{i:05d}' for i in range(robots)]
    started = time.perf_counter()
    for robot in ids:
        store.enrol_robot(robot, uuid.uuid4().hex * 2, ('bench',), now=T0)
    enrol_ms = (time.perf_counter() - started) * 1000 / robots
    store.commit_batch([], [PresenceChange(r, True, T0, 'connected') for r in ids], now=T0)
    seqs = dict.fromkeys(ids, 0)
    tele = dict.fromkeys(ids, 0)
    cursor = 0
    clock = T0 + 1

    def next_robots() -> list[str]:
        nonlocal cursor
        chosen = [ids[(cursor + i) % robots] for i in range(batch)]
        cursor = (cursor + batch) % robots
        return chosen

    def hb_batch() -> list[RobotMessage]:
        out = []
        for robot in next_robots():
            seqs[robot] += 1
            out.append(heartbeat(robot, seqs[robot], clock))
        return out

    def mixed_batch() -> list[RobotMessage]:
        out = []
        for robot in next_robots():
            seqs[robot] += 1
            out.append(heartbeat(robot, seqs[robot], clock))
            seqs[robot] += 1
            tele[robot] += 1
            out.append(delta(robot, seqs[robot], tele[robot], clock))
        return out

    def events_batch() -> list[RobotMessage]:
        out = hb_batch()
        for robot in ids[cursor:cursor + max(1, batch // 20)]:
            seqs[robot] += 1
            out.append(event(robot, seqs[robot], clock))
        return out

    figures: dict[str, float] = {'enrol_ms': enrol_ms}
    kinds: list[tuple[str, Callable[[], list[RobotMessage]]]] = [
        ('hb', hb_batch), ('mixed', mixed_batch), ('events', events_batch)]
    for kind, make in kinds:
        for _ in range(3):  # warm up: first batches of a kind fill caches and plans
            clock += 0.05
            store.commit_batch(make(), now=clock)
        times: list[float] = []
        messages = 0
        deadline = time.perf_counter() + budget_s
        while len(times) < rounds and time.perf_counter() < deadline:
            clock += 0.05
            msgs = make()
            t = time.perf_counter()
            result = store.commit_batch(msgs, now=clock)
            times.append((time.perf_counter() - t) * 1000)
            assert len(result.acknowledged) == len(msgs), 'every message is acknowledged'
            messages += len(msgs)
        figures[f'{kind}_p50_ms'] = statistics.median(times)
        figures[f'{kind}_p99_ms'] = percentile(times, 0.99)
        figures[f'{kind}_max_ms'] = max(times)
        figures[f'{kind}_msgs_per_s'] = messages / (sum(times) / 1000)
        print(f'{label:10s} {kind:6s} batch={len(msgs):4d} rounds={len(times):4d} '
              f'p50={figures[f"{kind}_p50_ms"]:7.2f} ms p99={figures[f"{kind}_p99_ms"]:7.2f} ms '
              f'max={figures[f"{kind}_max_ms"]:7.2f} ms '
              f'throughput={figures[f"{kind}_msgs_per_s"]:9.0f} msgs/s', flush=True)
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--db', choices=['postgresql', 'sqlite', 'both'], default='both')
    parser.add_argument('--robots', type=int, default=2000)
    parser.add_argument('--batch', type=int, default=500)
    parser.add_argument('--rounds', type=int, default=200, help='timed batches per kind')
    parser.add_argument('--budget', type=float, default=20.0, help='seconds per kind at most')
    args = parser.parse_args()
    if args.batch > args.robots:
        parser.error('--batch must not exceed --robots')
    results: dict[str, dict[str, float]] = {}
    print(f'robots={args.robots} batch={args.batch} rounds<={args.rounds}', flush=True)
    if args.db in ('postgresql', 'both'):
        admin = base_url().replace('postgresql://', 'postgresql+psycopg://', 1)
        name = f'lekiwi_bench_{uuid.uuid4().hex[:12]}'
        engine = sa.create_engine(admin, isolation_level='AUTOCOMMIT', poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE {name}')
        try:
            url = make_url(admin).set(database=name).render_as_string(hide_password=False)
            results['postgresql'] = run(url, 'postgresql', args.robots, args.batch,
                                        args.rounds, args.budget)
        finally:
            engine.dispose()
            drop_database(libpq(admin), name)
    if args.db in ('sqlite', 'both'):
        with tempfile.TemporaryDirectory() as tmp:
            results['sqlite'] = run(f'sqlite:///{tmp}/bench.db', 'sqlite', args.robots,
                                    args.batch, args.rounds, args.budget)
    for label, f in results.items():
        print(f'{label}: enrol {f["enrol_ms"]:.2f} ms/robot')
    db = 'postgresql' if 'postgresql' in results else 'sqlite'
    f = results[db]
    print(f'db={db} robots={args.robots} batch={args.batch} '
          f'hb_p50_ms={f["hb_p50_ms"]:.2f} hb_p99_ms={f["hb_p99_ms"]:.2f} '
          f'mixed_p50_ms={f["mixed_p50_ms"]:.2f} mixed_p99_ms={f["mixed_p99_ms"]:.2f} '
          f'events_p50_ms={f["events_p50_ms"]:.2f} events_p99_ms={f["events_p99_ms"]:.2f} '
          f'hb_msgs_per_s={f["hb_msgs_per_s"]:.0f}')


if __name__ == '__main__':
    main()
