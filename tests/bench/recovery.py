"""Recovery benchmark: restart after SIGKILL, projection rebuild, backup and restore at scale.

Fills a fresh PostgreSQL database with EVENTS events over ROBOTS robots through the store's
batch path (SqlFleetStore.commit_batch: the writer's own path, so the log, the read models,
snapshots and sequence coverage are what a live server would have written), starts the real
server (`lekiwi-fleet-server serve`, writer processes included), SIGKILLs it once it is ready,
and times the next start to /readyz. Then, with the server stopped, it times
`rebuild-projections`, `backup` (pg_dump) and `restore` (pg_restore into an empty database),
all through the command line an operator uses; `--verify` also times `verify` on the restore.

    python tests/bench/recovery.py                       # 1,000,000 events, 1,000 robots
    python tests/bench/recovery.py --events 100000 --verify

Last line: events=… ready_s=… rebuild_s=… backup_s=… restore_s=…
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / 'src' / 'lekiwi_fleet_server'
sys.path.insert(0, str(SOURCE))  # the source tree, not install/

import httpx  # noqa: E402
import psycopg  # noqa: E402
from gateway import Database, base_url, libpq  # noqa: E402  (this folder)

from lekiwi_fleet_server.domain import topics  # noqa: E402
from lekiwi_fleet_server.store.interface import PresenceChange, RobotMessage  # noqa: E402
from lekiwi_fleet_server.store.sql_store import SqlFleetStore  # noqa: E402

BOOT = 'recoveryboot01'
T0 = 1_764_190_000.0


def event(robot: str, seq: int, t: float) -> RobotMessage:
    msg = {'header': {'stamp': {'sec': int(t), 'nanosec': 0}, 'frame_id': ''},
           'robot_id': robot, 'boot_id': BOOT, 'sequence': seq, 'severity': 1,
           'event_type': 'bench.tick', 'payload_json': '{"n": 1}'}
    return RobotMessage(robot, BOOT, seq, topics.EVENTS, msg, t)


def count_events(url: str) -> int:
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute('SELECT count(*) FROM events').fetchone()
    return int(row[0]) if row else 0


def fill(url: str, events: int, robots: int, batch: int) -> float:
    """Enrol the robots and commit event messages until the log holds `events`; return s."""
    started = time.perf_counter()
    store = SqlFleetStore.open(url)
    try:
        ids = [f'kiwi-{i:05d}' for i in range(robots)]
        for robot in ids:
            store.enrol_robot(robot, uuid.uuid4().hex * 2, ('bench',), now=T0)
        store.commit_batch([], [PresenceChange(r, True, T0, 'connected') for r in ids], now=T0)
        stored = 2 * robots
        seqs = dict.fromkeys(ids, 0)
        cursor, clock, last_print = 0, T0, time.perf_counter()
        while stored < events:
            clock += 0.05
            messages = []
            for _ in range(min(batch, events - stored)):
                robot = ids[cursor % robots]
                cursor += 1
                seqs[robot] += 1
                messages.append(event(robot, seqs[robot], clock))
            result = store.commit_batch(messages, now=clock)
            stored += len(result.new_events)
            if time.perf_counter() - last_print > 10:
                last_print = time.perf_counter()
                rate = stored / (last_print - started)
                print(f'  filled {stored:,} events ({rate:,.0f}/s)', flush=True)
        store.mark_all_offline(now=clock + 1)
    finally:
        store.close()
    return time.perf_counter() - started


class Server:
    """`lekiwi-fleet-server serve` on a database, as a child process."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.env = {**os.environ, 'LEKIWI_DATABASE_URL': url, 'LEKIWI_DATA_DIR': str(data_dir),
                    'LEKIWI_API_PORT': '0', 'LEKIWI_GATEWAY_PORT': '0',
                    'LEKIWI_LOG_LEVEL': 'warning',
                    'PYTHONPATH': os.pathsep.join(
                        p for p in (str(SOURCE), os.environ.get('PYTHONPATH')) if p)}
        self.proc: subprocess.Popen[str] | None = None

    def start_until_ready(self, timeout_s: float = 300.0) -> float:
        """Start the server; return the seconds until /readyz answered 200."""
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, '-m', 'lekiwi_fleet_server', 'serve'],
                                     env=self.env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the ready line, or '' if it died
        match = re.search(r'api=(\S+)', line)
        if not match:
            raise SystemExit(f'the server did not start: {line!r}')
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f'{match.group(1)}/readyz', timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise SystemExit('the server never became ready')

    def kill(self) -> None:
        """SIGKILL the server (its writer processes die with it) and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """Stop the server gracefully."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()


def cli(args: list[str], url: str, data_dir: Path) -> float:
    """Run a lekiwi-fleet-server command; return its seconds (exit on failure)."""
    env = {**os.environ, 'LEKIWI_DATABASE_URL': url, 'LEKIWI_DATA_DIR': str(data_dir),
           'PYTHONPATH': os.pathsep.join(p for p in (str(SOURCE), os.environ.get('PYTHONPATH'))
                                         if p)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', *args], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    progress = [line for line in done.stderr.splitlines() if line.strip()]
    print(f'  {" ".join(args[:1])}: {progress[-1] if progress else ""} '
          f'{done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""}', flush=True)
    if done.returncode != 0:
        raise SystemExit(f'{args[0]} failed ({done.returncode}):\n{done.stderr}{done.stdout}')
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--events', type=int, default=1_000_000)
    parser.add_argument('--robots', type=int, default=1000)
    parser.add_argument('--batch', type=int, default=5000, help='messages per commit_batch')
    parser.add_argument('--verify', action='store_true', help='also time verify on the restore')
    args = parser.parse_args()
    url = base_url()
    tag = uuid.uuid4().hex[:8]
    with Database(url, f'lekiwi_bench_recovery_{tag}') as db, \
            Database(url, f'lekiwi_bench_restored_{tag}') as restored, \
            tempfile.TemporaryDirectory(prefix='lekiwi-recovery-') as tmp:
        work = Path(tmp)
        print(f'filling {args.events:,} events over {args.robots:,} robots '
              f'(batches of {args.batch})', flush=True)
        fill_s = fill(db.url, args.events, args.robots, args.batch)
        events = count_events(db.url)
        print(f'filled: {events:,} events in {fill_s:.1f} s ({events / fill_s:,.0f}/s)')

        server = Server(db.url, work / 'data')
        first_s = server.start_until_ready()
        print(f'first start to /readyz: {first_s:.2f} s; SIGKILL')
        server.kill()
        ready_s = server.start_until_ready()
        print(f'after SIGKILL, start to /readyz: {ready_s:.2f} s')
        server.stop()

        rebuild_s = cli(['rebuild-projections'], db.url, work / 'data')
        print(f'rebuild-projections: {rebuild_s:.1f} s ({events / rebuild_s:,.0f} events/s)')
        backup_s = cli(['backup', str(work / 'backup')], db.url, work / 'data')
        dump_mb = sum(p.stat().st_size for p in (work / 'backup').rglob('*')) / 1e6
        print(f'backup: {backup_s:.1f} s, {dump_mb:.0f} MB')
        restore_s = cli(['restore', str(work / 'backup')], restored.url, work / 'restored')
        print(f'restore into an empty database: {restore_s:.1f} s')
        verify = ''
        if args.verify:
            verify_s = cli(['verify'], restored.url, work / 'restored')
            print(f'verify of the restore: {verify_s:.1f} s')
            verify = f' verify_s={verify_s:.1f}'
        print(f'events={events} ready_s={ready_s:.2f} rebuild_s={rebuild_s:.1f} '
              f'backup_s={backup_s:.1f} restore_s={restore_s:.1f}{verify}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
