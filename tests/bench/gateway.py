"""Gateway benchmark (issue 3): N simulated robots against the real server on PostgreSQL.

For each N it makes a fresh database, enrols N robots, starts `lekiwi-fleet-server serve` as a
subprocess, runs tests/bench/gateway_load.py in a second process (robots with 1 Hz heartbeats
and telemetry deltas, plus dashboard subscribers), samples the server's CPU and RSS and the
database's row writes, and prints per N: connections held, p50/p99 latency from robot send to
ack (durable commit) and to dashboard delivery, server CPU % and RSS, rows written per second,
and the PostgreSQL rows written per robot per second (pg_stat_database's tuples inserted,
updated and deleted over the window, with pg_stat_user_tables' split by table: what really hit
the database). `--protocol 2` (default) runs lekiwi-fleet/2 robots, whose plain heartbeats are
coalesced into one flush per `state_flush_interval_s`; `--protocol 1` the robots of before.
The last line sums up the largest N as key=value pairs.

    python tests/bench/gateway.py                      # N = 1000, 5000, 10000
    python tests/bench/gateway.py --robots 2000 --duration 10
    python tests/bench/gateway.py --robots 20000 --gateways 2   # NATS, writer role, 2 gateways

With `--gateways K` above 1 (or `--broker`) the server runs as roles over NATS: a nats-server
(temp dir, loopback), one `serve --role writer --shard I` process per writer shard
(`--writers`, default 2: LEKIWI_WRITER_SHARDS) and K `serve --role gateway` processes; the load
spreads the robots over the gateways, the dashboards read the first gateway's stream, and the
server's CPU and RSS are those of all of them (gateways and writers summed apart as well).
Durable messages (telemetry) cross JetStream, lekiwi-fleet/2 heartbeats core NATS; the load
prints their ack latencies apart too (`durable ack`, `state ack`).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parents[2]
SERVER_SRC = ROOT / 'src' / 'lekiwi_fleet_server'
sys.path.insert(0, str(SERVER_SRC))  # the source tree, not a possibly stale install/

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from lekiwi_fleet_server.domain.tokens import generate_token, hash_token  # noqa: E402


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def base_url() -> str:
    url = os.environ.get('LEKIWI_TEST_DATABASE_URL')
    if not url:
        url = subprocess.run([str(ROOT / 'scripts' / 'ensure_postgres.sh')], check=True,
                             capture_output=True, text=True).stdout.strip()
    return url


def libpq(url: str) -> str:
    """Return a libpq connection string for a SQLAlchemy URL."""
    u = make_url(url)
    return (f'host={u.host} port={u.port or 5432} user={u.username} '
            f'password={u.password} dbname={u.database}')


class Database:
    """A throwaway PostgreSQL database for one run."""

    def __init__(self, url: str, name: str) -> None:
        self.admin = libpq(url)
        self.name = name
        self.url = make_url(url).set(database=name).render_as_string(hide_password=False)

    def __enter__(self) -> Database:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS {self.name} WITH (FORCE)')
            conn.execute(f'CREATE DATABASE {self.name}')
        return self

    def __exit__(self, *exc: object) -> None:
        drop_database(self.admin, self.name)

    def rows_written(self) -> int:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute('SELECT pg_stat_force_next_flush()')
            row = conn.execute('SELECT tup_inserted + tup_updated + tup_deleted '
                               'FROM pg_stat_database WHERE datname = %s',
                               (self.name,)).fetchone()
        return int(row[0]) if row else 0

    def rows_by_table(self) -> dict[str, int]:
        """Return rows inserted + updated + deleted so far per table (pg_stat_user_tables)."""
        with psycopg.connect(libpq(self.url), autocommit=True) as conn:
            conn.execute('SELECT pg_stat_force_next_flush()')
            rows = conn.execute('SELECT relname, n_tup_ins + n_tup_upd + n_tup_del '
                                'FROM pg_stat_user_tables').fetchall()
        return {name: int(count) for name, count in rows}


def drop_database(admin: str, name: str, attempts: int = 8) -> None:
    """Drop a database, retrying while an autovacuum worker is on it (only a superuser may end
    one; it is done within moments)."""
    for attempt in range(attempts):
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def enrol(url: str, n: int) -> list[tuple[str, str]]:
    """Migrate the database and enrol n robots through the store; return ids and tokens."""
    from lekiwi_fleet_server.migrations import upgrade
    from lekiwi_fleet_server.store.config import StoreConfig
    from lekiwi_fleet_server.store.sql_store import SqlFleetStore

    upgrade(url)
    store = SqlFleetStore.open(url, StoreConfig())
    try:
        now = time.time()
        credentials = []
        for i in range(n):
            robot_id, token = f'bench-{i:05d}', generate_token()
            store.enrol_robot(robot_id, hash_token(token), ('bench',), now=now)
            credentials.append((robot_id, token))
        return credentials
    finally:
        store.close()


def postgres_cpu_seconds() -> dict[int, float]:
    """Return CPU seconds per PostgreSQL process (compare per pid: backends come and go)."""
    seconds = {}
    for proc in psutil.process_iter(['name']):
        if proc.info['name'] and proc.info['name'].startswith('postgres'):
            try:
                t = proc.cpu_times()
                seconds[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
    return seconds


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def metrics_text(api: str) -> str:
    """Fetch the server's /metrics once (a window's figures all come from the same scrape)."""
    import urllib.request
    # A saturated gateway's loop answers late: wait rather than lose the run's figures.
    with urllib.request.urlopen(f'{api}/metrics', timeout=60) as response:
        return response.read().decode()


def scrape(api: str, name: str) -> float | None:
    return values(metrics_text(api), name)[name]


def values(text: str, *names: str) -> dict[str, float | None]:
    found = {}
    for name in names:
        match = re.search(rf'^{re.escape(name)} ([0-9.e+]+)$', text, re.M)
        found[name] = float(match.group(1)) if match else None
    return found


# Histograms whose p99 bucket the bench prints: a batch's commit (the writer's round trip),
# its oldest frame's time in the server until its acks are written, and the ack writing alone.
HISTOGRAMS = ('lekiwi_store_commit_seconds', 'lekiwi_gateway_ack_seconds',
              'lekiwi_gateway_ack_send_seconds')


def histogram_buckets(text: str) -> dict[str, dict[float, float]]:
    """Return each of HISTOGRAMS' cumulative bucket counts, by upper bound."""
    return {name: {float(le): float(count) for le, count in re.findall(
        rf'^{name}_bucket\{{le="([0-9.e+Inf]+)"\}} ([0-9.e+]+)$', text, re.M)}
        for name in HISTOGRAMS}


def bucket_percentile(before: dict[float, float], after: dict[float, float],
                      q: float) -> float | None:
    """Return the upper bound (ms) of the bucket holding the q-th percentile of the window."""
    delta = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    for le, count in delta:
        if total and count >= total * q / 100.0:
            return le * 1000.0
    return None


# The server's own view of its batches: how long a commit takes from the gateway's side (the
# writer's round trip) and how many messages it holds.
BATCH_METRICS = ('lekiwi_gateway_messages_committed_total', 'lekiwi_store_commit_seconds_sum',
                 'lekiwi_store_commit_seconds_count', 'lekiwi_store_batch_messages_sum')


class Roles:
    """The server under test: one `serve` process, or (broker) NATS, a writer, K gateways."""

    def __init__(self, env: dict[str, str], args: argparse.Namespace, tmp: Path) -> None:
        self._env = env
        self._k = args.gateways
        self._writers = args.writers
        self._broker = args.broker or args.gateways > 1
        self._tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self._nats: subprocess.Popen[bytes] | None = None

    @property
    def first(self) -> subprocess.Popen[str]:
        return self.procs[0]

    def others(self) -> list[psutil.Process]:
        """Return every server process but the first (the other gateways and the writers)."""
        return [psutil.Process(p.pid) for p in self.procs[1:]]

    def nats(self) -> psutil.Process | None:
        """Return the nats-server process (None without a broker)."""
        return psutil.Process(self._nats.pid) if self._nats is not None else None

    def writers(self) -> list[psutil.Process]:
        """Return the writer role processes (none without a broker)."""
        return [psutil.Process(p.pid) for p in self.procs[self._k:]] if self._broker else []

    def _serve(self, env: dict[str, str], *role: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen([sys.executable, '-m', 'lekiwi_fleet_server', 'serve', *role],
                                env=env, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ''
        if 'ready' not in line:
            raise RuntimeError(f'server {role} did not start: {line!r}')
        return proc, line

    def start(self) -> tuple[list[str], list[str]]:
        """Start the roles; return the APIs' and the gateways' URLs."""
        env = dict(self._env)
        if self._broker:
            nats = ROOT / '.venv' / 'bin' / 'nats-server'
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                port = s.getsockname()[1]
            self._nats = subprocess.Popen([str(nats), '-a', '127.0.0.1', '-p', str(port), '-js',
                                           '-sd', str(self._tmp / 'nats')],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env['LEKIWI_NATS_URL'] = f'nats://127.0.0.1:{port}'
            env['LEKIWI_WRITER_SHARDS'] = str(self._writers)
            for shard in range(self._writers):  # one process per shard, as on many hosts
                self._serve(env, '--role', 'writer', '--shard', str(shard))
        apis, gateways = [], []
        for i in range(self._k if self._broker else 1):
            role = ('--role', 'gateway') if self._broker else ()
            _proc, line = self._serve(dict(env, LEKIWI_GATEWAY_ID=f'bench-{i}'), *role)
            match = re.search(r'api=(\S+) gateway=(\S+)', line)
            if not match:
                raise RuntimeError(f'server did not start: {line!r}')
            apis.append(match.group(1))
            gateways.append(match.group(2))
        if self._broker:  # gateways first in the list, then the writers
            self.procs = self.procs[self._writers:] + self.procs[:self._writers]
        return apis, gateways

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._nats is not None:
            self._nats.terminate()
            self._nats.wait(30)


class Loads:
    """The load generator processes of one run, seen as one (figures: sums, worst p99s)."""

    def __init__(self, procs: list[subprocess.Popen[str]]) -> None:
        self.procs = procs
        self._ps = [psutil.Process(p.pid) for p in procs]

    def poll(self) -> int | None:
        codes = [p.poll() for p in self.procs]
        return next((c for c in codes if c is not None), None)

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def cpu_times(self) -> Any:
        times = [p.cpu_times() for p in self._ps]
        return argparse.Namespace(user=sum(t.user for t in times),
                                  system=sum(t.system for t in times))

    def output(self) -> str:
        return '\n'.join((p.stdout.read() if p.stdout else '').strip() for p in self.procs
                         if p.poll() is not None)

    def result(self, timeout: float) -> dict[str, Any]:
        results = [orjson.loads(p.communicate(timeout=timeout)[0].strip().splitlines()[-1])
                   for p in self.procs]
        if len(results) == 1:
            return results[0]
        merged = dict(results[0])  # the dashboards' figures are the first process's
        for key in ('robots', 'authenticated', 'held', 'sent', 'acked', 'commit_samples',
                    'durable_samples', 'state_samples', 'disconnects'):
            merged[key] = sum(r[key] for r in results)
        for key in ('p50_commit_ms', 'p99_commit_ms', 'max_commit_ms', 'p50_durable_ack_ms',
                    'p99_durable_ack_ms', 'p50_state_ack_ms', 'p99_state_ack_ms',
                    'p99_loop_lag_ms', 'max_loop_lag_ms', 'connect_s'):
            known = [r[key] for r in results if r.get(key) is not None]
            merged[key] = max(known) if known else None  # the worse process's
        merged['errors'] = {}
        for r in results:
            for code, count in r['errors'].items():
                merged['errors'][code] = merged['errors'].get(code, 0) + count
        merged['worst_seconds'] = sorted((w for r in results for w in r['worst_seconds']),
                                         key=lambda w: -w['p99_commit_ms'])[:3]
        return merged


class LoadDied(RuntimeError):
    """The load generator exited before its measured window."""


def run_one(n: int, args: argparse.Namespace, pg_url: str) -> dict[str, Any]:
    name = f'lekiwi_bench_{n}_{os.getpid()}'
    with Database(pg_url, name) as db, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        credentials = enrol(db.url, n)
        enrol_s = time.perf_counter() - t0
        tokens = Path(tmp) / 'tokens'
        tokens.write_text(''.join(f'{r} {t}\n' for r, t in credentials))
        shares = [tokens] if args.loads == 1 else []
        for j in range(args.loads if args.loads > 1 else 0):
            # Robot i goes to gateway i mod K in one process as in several: share j holds
            # every (loads)-th robot, and its process the matching gateways.
            share = Path(tmp) / f'tokens-{j}'
            share.write_text(''.join(f'{r} {t}\n' for r, t in credentials[j::args.loads]))
            shares.append(share)
        admin = 'lkw_bench_' + secrets.token_hex(16)
        env = dict(os.environ, LEKIWI_DATABASE_URL=db.url, LEKIWI_API_PORT='0',
                   LEKIWI_GATEWAY_PORT='0', LEKIWI_BOOTSTRAP_ADMIN_TOKEN=admin,
                   LEKIWI_LOG_LEVEL='warning', LEKIWI_MIGRATE_ON_START='false',
                   PYTHONPATH=f'{SERVER_SRC}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
        roles = Roles(env, args, Path(tmp))
        try:
            apis, gateways = roles.start()
            api, gateway = apis[0], ','.join(gateways)
            proc = psutil.Process(roles.first.pid)
            writers = roles.others()  # the other gateways and the writer roles, if any
            writer_roles = roles.writers()
            nats_proc = roles.nats()  # not part of the server's figures: printed apart
            # One load process, or (--loads L) several, each with its share of the robots:
            # a process's descriptors (nofile) cap the robots one generator can hold.
            load = Loads([subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name('gateway_load.py')),
                 '--gateway-url', ','.join(gateways[j::args.loads]) or gateway,
                 '--stream-url',
                 api.replace('http://', 'ws://') + '/api/v1/stream', '--admin-token', admin,
                 '--tokens', str(share), '--dashboards', str(args.dashboards if j == 0 else 0),
                 '--warmup', str(args.warmup), '--duration', str(args.duration),
                 '--telemetry-period', str(args.telemetry_period),
                 '--protocol', str(args.protocol)],
                stdout=subprocess.PIPE, text=True)
                for j, share in enumerate(shares)])
            load_proc = load
            # Sample over the measured window: wait for the load to connect and warm up.
            deadline = time.monotonic() + 600
            while sum(scrape(a, 'lekiwi_gateway_connections') or 0 for a in apis) < n * 0.999:
                if load.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(args.warmup)
            if load.poll() is not None:
                # The load generator died before the window (at 20,000 robots on one host it
                # may: its own descriptors, the machine's memory): say so, with what held.
                held = sum(scrape(a, 'lekiwi_gateway_connections') or 0 for a in apis)
                out = load.output()
                try:  # it ran its whole schedule (not every robot connected): its figures
                    seen = orjson.loads(out.splitlines()[-1])
                    out = ' '.join(f'{k}={seen.get(k)}' for k in (
                        'authenticated', 'held', 'p99_commit_ms', 'p99_durable_ack_ms',
                        'p99_state_ack_ms', 'p99_dashboard_ms', 'errors', 'disconnects'))
                except (ValueError, IndexError):
                    out = repr(out[-500:])
                raise LoadDied(f'load generator exited with {load.returncode} before every '
                               f'robot connected (the server CPU window was not sampled); '
                               f'the gateways held {held:.0f} of {n} robots; the load '
                               f'printed: {out}')
            cpu0, pg0, load0 = proc.cpu_times(), postgres_cpu_seconds(), load_proc.cpu_times()
            writer0 = [w.cpu_times() for w in writers]
            roles0 = [w.cpu_times() for w in writer_roles]
            nats0 = nats_proc.cpu_times() if nats_proc is not None else None
            rows0, tables0 = db.rows_written(), db.rows_by_table()
            text0 = metrics_text(api)
            batches0, buckets0 = values(text0, *BATCH_METRICS), histogram_buckets(text0)
            w0 = time.monotonic()
            rss_peak = 0
            writer_rss_peak = 0
            while time.monotonic() - w0 < args.duration * 0.9 and load.poll() is None:
                rss_peak = max(rss_peak, proc.memory_info().rss)
                writer_rss_peak = max(writer_rss_peak, sum(w.memory_info().rss for w in writers))
                time.sleep(0.5)
            wall = time.monotonic() - w0
            if wall < args.duration * 0.5:  # the load ended its schedule during the window
                raise LoadDied(f'load generator ended {wall:.1f} s into the window: not '
                               f'measured ({load.output()[-300:]!r})')
            cpu1, pg1 = proc.cpu_times(), postgres_cpu_seconds()
            writer1 = [w.cpu_times() for w in writers]
            roles1 = [w.cpu_times() for w in writer_roles]
            nats1 = nats_proc.cpu_times() if nats_proc is not None else None
            load1 = load_proc.cpu_times() if load.poll() is None else load0
            rows1, tables1 = db.rows_written(), db.rows_by_table()
            text1 = metrics_text(api)
            batches1, buckets1 = values(text1, *BATCH_METRICS), histogram_buckets(text1)
            connections = sum(values(t, 'lekiwi_gateway_connections')
                              ['lekiwi_gateway_connections'] or 0
                              for t in [text1] + [metrics_text(a) for a in apis[1:]])
            result = load.result(timeout=args.duration + 600)
        finally:
            roles.stop()
        gateway_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
        writer_cpu = sum(b.user + b.system - a.user - a.system
                         for a, b in zip(writer0, writer1, strict=True)) / wall * 100
        # With a broker: the writer roles' own CPU, summed, and the gateways' (all of them).
        roles_cpu = [(b.user + b.system - a.user - a.system) / wall * 100
                     for a, b in zip(roles0, roles1, strict=True)]
        delta = {k: (batches1[k] or 0) - (batches0[k] or 0) for k in BATCH_METRICS}
        batches = delta['lekiwi_store_commit_seconds_count'] or 1
        result.update({
            'enrol_s': round(enrol_s, 1),
            'server_connections': connections,
            # The server is the gateway process and its writer process together.
            'cpu_percent': round(gateway_cpu + writer_cpu, 1),
            'gateway_cpu_percent': round(gateway_cpu, 1),
            'writer_cpu_percent': round(writer_cpu, 1),
            'writer_roles_cpu_percent': round(sum(roles_cpu), 1),
            'nats_cpu_percent': round((nats1.user + nats1.system - nats0.user - nats0.system)
                                      / wall * 100, 1) if nats0 and nats1 else None,
            'writer_role_cpu_percents': [round(c, 1) for c in roles_cpu],
            'gateways_cpu_percent': round(gateway_cpu + writer_cpu - sum(roles_cpu), 1),
            'rss_mb': round((rss_peak + writer_rss_peak) / 2**20, 1),
            'postgres_cpu_percent': round(cpu_delta(pg0, pg1) / wall * 100, 1),
            'load_cpu_percent': round((load1.user + load1.system - load0.user - load0.system)
                                      / wall * 100, 1),
            'rows_per_s': round((rows1 - rows0) / wall),
            'rows_per_robot_s': round((rows1 - rows0) / wall / n, 3),
            'rows_by_table': {t: round((c - tables0.get(t, 0)) / wall / n, 3)
                              for t, c in sorted(tables1.items()) if c > tables0.get(t, 0)},
            'messages_per_s': round(delta['lekiwi_gateway_messages_committed_total'] / wall),
            'batches_per_s': round(delta['lekiwi_store_commit_seconds_count'] / wall, 1),
            'commit_avg_ms': round(delta['lekiwi_store_commit_seconds_sum'] / batches * 1000, 1),
            'batch_avg_messages': round(delta['lekiwi_store_batch_messages_sum'] / batches),
            **{f'p99_{name}_le_ms': bucket_percentile(buckets0[name], buckets1[name], 99)
               for name in HISTOGRAMS},
        })
        return result


def _second(worst: dict[str, Any]) -> str:
    return f'{worst["second"]}s {worst["p99_commit_ms"]}/{worst["max_loop_lag_ms"]}ms'


def fmt(value: Any) -> str:
    return f'{value:.1f}' if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--robots', default='1000,5000,10000',
                        help='comma-separated robot counts')
    parser.add_argument('--duration', type=float, default=20.0, help='measured seconds per N')
    parser.add_argument('--warmup', type=float, default=5.0)
    parser.add_argument('--dashboards', type=int, default=5)
    parser.add_argument('--telemetry-period', type=float, default=5.0)
    parser.add_argument('--gateways', type=int, default=1,
                        help='gateway processes (above 1: roles over NATS, see above)')
    parser.add_argument('--broker', action='store_true',
                        help='run the roles over NATS even with one gateway')
    parser.add_argument('--loads', type=int, default=1,
                        help='load generator processes (each holds its share of the robots; '
                             'more than one where one process\'s nofile is too few)')
    parser.add_argument('--writers', type=int, default=2,
                        help='with a broker: writer shards, one writer process each')
    parser.add_argument('--protocol', type=int, choices=(1, 2), default=2,
                        help="the robots' protocol: 2 (the agent's) or 1")
    args = parser.parse_args()
    nofile = raise_nofile_limit()
    counts = [int(x) for x in args.robots.split(',') if x]
    pg_url = base_url()
    print(f'gateway benchmark: robots={counts} gateways={args.gateways} '
          f'broker={args.broker or args.gateways > 1} duration={args.duration}s '
          f'dashboards={args.dashboards} telemetry every {args.telemetry_period}s '
          f'cpus={os.cpu_count()} nofile={nofile} protocol=lekiwi-fleet/{args.protocol}',
          flush=True)
    results = []
    for i, n in enumerate(counts):
        try:
            r = run_one(n, args, pg_url)
        except LoadDied as exc:
            print(f'N={n}: not measured: {exc}', flush=True)
            if i == len(counts) - 1 and not results:  # N may repeat: runs in a row
                print(f'robots={n} held=None (load generator died)')
                return 1
            continue
        results.append(r)
        print(f'N={n}: held={r["held"]}/{n} (server {fmt(r["server_connections"])}) '
              f'connect={r["connect_s"]}s '
              f'commit p50={fmt(r["p50_commit_ms"])}ms p99={fmt(r["p99_commit_ms"])}ms '
              f'max={fmt(r["max_commit_ms"])}ms (n={r["commit_samples"]}) '
              f'dashboard p50={fmt(r["p50_dashboard_ms"])}ms '
              f'p99={fmt(r["p99_dashboard_ms"])}ms (n={r["dashboard_samples"]}, '
              f'{r["dashboard_kb_per_s"]} KB/s per dashboard) '
              f'server cpu={r["cpu_percent"]}% (gateway {r["gateway_cpu_percent"]}% '
              f'writer {r["writer_cpu_percent"]}%) rss={r["rss_mb"]}MB '
              f'postgres cpu={r["postgres_cpu_percent"]}% load cpu={r["load_cpu_percent"]}% '
              f'rows/s={r["rows_per_s"]} messages/s={r["messages_per_s"]} '
              f'batches/s={r["batches_per_s"]} (avg {r["batch_avg_messages"]} messages, '
              f'{r["commit_avg_ms"]}ms from hand-over to commit, p99 <= '
              f'{fmt(r["p99_lekiwi_store_commit_seconds_le_ms"])}ms; oldest frame to acks '
              f'written p99 <= {fmt(r["p99_lekiwi_gateway_ack_seconds_le_ms"])}ms, writing '
              f'one batch\'s acks p99 <= {fmt(r["p99_lekiwi_gateway_ack_send_seconds_le_ms"])}'
              f'ms) load loop lag '
              f'p99={fmt(r["p99_loop_lag_ms"])}ms max={fmt(r["max_loop_lag_ms"])}ms '
              f'worst seconds (ack p99 / load loop lag max): '
              f'{", ".join(_second(w) for w in r.get("worst_seconds", []))} '
              f'errors={r["errors"]} disconnects={r["disconnects"]}', flush=True)
        print(f'N={n}: acks by kind: durable p50={fmt(r["p50_durable_ack_ms"])}ms '
              f'p99={fmt(r["p99_durable_ack_ms"])}ms (n={r["durable_samples"]}) state '
              f'p50={fmt(r["p50_state_ack_ms"])}ms p99={fmt(r["p99_state_ack_ms"])}ms '
              f'(n={r["state_samples"]}); gateways cpu={r["gateways_cpu_percent"]}% '
              f'writer roles cpu={r["writer_roles_cpu_percent"]}% '
              f'nats-server cpu={r["nats_cpu_percent"]}% '
              f'(per shard {r["writer_role_cpu_percents"]})', flush=True)
        print(f'N={n}: postgres rows per robot-second={r["rows_per_robot_s"]} (by table: '
              + ', '.join(f'{t} {v}' for t, v in r['rows_by_table'].items()) + ')', flush=True)
    last = results[-1]
    print(f'robots={last["robots"]} held={last["held"]} '
          f'p99_commit_ms={fmt(last["p99_commit_ms"])} '
          f'p99_dashboard_ms={fmt(last["p99_dashboard_ms"])} '
          f'cpu_percent={last["cpu_percent"]} rss_mb={last["rss_mb"]} '
          f'rows_per_s={last["rows_per_s"]} rows_per_robot_s={last["rows_per_robot_s"]} '
          f'p99_durable_ack_ms={fmt(last["p99_durable_ack_ms"])} '
          f'p99_state_ack_ms={fmt(last["p99_state_ack_ms"])} gateways={args.gateways} '
          f'writer_cpu_percent={last["writer_roles_cpu_percent"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
