"""Dashboard benchmark (issue 19): the web dashboard in headless Chromium with N robots live.

Makes a fresh PostgreSQL database, enrols N robots, starts `lekiwi-fleet-server serve`, connects
the N protocol-level robots of tests/bench/gateway_load.py (1 Hz heartbeats, telemetry deltas;
no extra stream subscribers), and one probe robot (`aaa-probe`, first in the overview's default
order, so its row is on screen) driven from here: heartbeats every 0.5 s whose teleop flag
flips every 2 s. Then it opens the dashboard in Debian's Chromium (Playwright) and prints:

- first_render_s: from navigating to /ui/ (logged in) to the overview listing all N+1 robots;
- p50/p99 from the probe's heartbeat send (the state change at the robot) to its row's
  teleop indicator changing in the page's DOM (a MutationObserver stamps Date.now());
- the page's JS heap (CDP Performance.getMetrics JSHeapUsedSize) and its main-thread busy
  share (TaskDuration over wall time, over the measured window).

- where the first render's time went as the page saw it: the page's HTML, the stream's
  open, the snapshot's arrival, its size and JSON.parse time.

With `--roles` the server runs as roles over NATS and Redis (`Server`): the robots connect to
the gateway role(s), the page and its stream to an api role that holds no robots.

    python tests/bench/dashboard.py                  # 10,000 robots, 30 s measured
    python tests/bench/dashboard.py --robots 1000 --duration 15
    python tests/bench/dashboard.py --roles          # nats, redis, writers, gateway, api
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / 'tests'))

import gateway as gateway_bench  # noqa: E402  (its Database, enrol and /metrics helpers)
from dashboard_browser import ARTIFACTS, build_dashboard, chromium, missing_browser  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

PROBE = 'aaa-probe'
RESOURCES = {'cpu_percent': 10.0, 'load_average_1min': 0.5, 'memory_used_bytes': 900000000,
             'memory_total_bytes': 8000000000, 'disk_used_bytes': 10000000000,
             'disk_total_bytes': 64000000000, 'temperature_c': 50.0, 'battery_voltage_v': 12.0,
             'battery_percent': 80.0, 'network_tx_bytes_per_s': 600.0,
             'network_rx_bytes_per_s': 200.0, 'uptime_s': 100.0}
PASSWORD = 'bench-password-' + secrets.token_hex(4)


def rest(api: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        api + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={'Authorization': f'Bearer {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


class Probe(threading.Thread):
    """The probe robot: heartbeats every 0.5 s, teleop flipped every 2 s; send times kept."""

    def __init__(self, gateway: str, token: str) -> None:
        super().__init__(daemon=True)
        self.ws = self._connect(gateway, token)
        self.flips: list[tuple[bool, float]] = []  # (teleop_active, wall time sent)
        self.stop = threading.Event()
        self.boot = secrets.token_hex(8)
        self.seq = 0
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    @staticmethod
    def _connect(gateway: str, token: str, attempts: int = 10) -> Any:
        # A saturated gateway may time an auth out (auth_timeout): a robot tries again.
        for attempt in range(attempts):
            ws = connect(gateway, open_timeout=30, max_queue=None)  # noqa: SIM115
            ws.send(json.dumps({'op': 'auth', 'robot_id': PROBE, 'token': token,
                                'protocol': ['lekiwi-fleet/1'], 'agent_version': 'bench'}))
            try:
                reply = json.loads(ws.recv(timeout=30))
            except TimeoutError:
                reply = {'msg': 'no answer in 30 s'}
            if reply.get('msg') == 'authenticated':
                return ws
            print(f'probe: auth attempt {attempt + 1}: {reply}', file=sys.stderr, flush=True)
            ws.close()
            time.sleep(2.0)
        raise RuntimeError('the probe robot could not authenticate')

    def _drain(self) -> None:
        try:
            while True:
                reply = json.loads(self.ws.recv())  # read so the server never sees a slow client
                if reply.get('op') == 'status' and reply.get('level') != 'info':
                    print(f'probe: {reply}', file=sys.stderr)
        except Exception:
            pass

    def heartbeat(self, teleop: bool) -> float:
        self.seq += 1
        wall = time.time()
        self.ws.send(json.dumps({
            'op': 'publish', 'topic': 'fleet/heartbeat', 'boot_id': self.boot, 'seq': self.seq,
            'msg': {'header': {'stamp': {'sec': int(wall), 'nanosec': int(wall % 1 * 1e9)},
                               'frame_id': ''},
                    'robot_id': PROBE, 'agent_version': 'bench', 'software_version': 'probe',
                    'boot_id': self.boot, 'sequence': self.seq, 'state': 1,
                    'teleop_active': teleop, 'teleop_score': 0.9 if teleop else 0.0,
                    'resources': RESOURCES}}))
        return wall

    def run(self) -> None:
        teleop = False
        beat = 0
        while not self.stop.is_set():
            if beat % 4 == 0:
                teleop = not teleop
                self.flips.append((teleop, self.heartbeat(teleop)))
            else:
                self.heartbeat(teleop)
            beat += 1
            self.stop.wait(0.5)
        self.ws.close()


WATCH_PROBE = """(probe) => {
  window.__probeChanges = [];
  let last = null;
  const record = () => {
    const row = document.querySelector(`[data-robot-id="${probe}"].row`);
    const value = row ? row.getAttribute('data-teleop') : null;
    if (value !== last) { last = value; window.__probeChanges.push([value, Date.now()]); }
  };
  new MutationObserver(record).observe(document.getElementById('robot-rows'),
    { subtree: true, childList: true, attributes: true, attributeFilter: ['data-teleop'] });
  record();
}"""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def latencies(flips: list[tuple[bool, float]], changes: list[list[Any]]) -> list[float]:
    """Match each flip to the first DOM change to its value after it was sent (ms)."""
    out = []
    for value, sent in flips:
        want = 'on' if value else 'off'
        seen = next((t for v, t in changes if v == want and t / 1000 >= sent), None)
        if seen is not None:
            out.append(seen - sent * 1000)
    return out


def connections(api: str) -> float:
    """Return the gateway's connection count; 0 while the busy server does not answer."""
    try:
        return gateway_bench.scrape(api, 'lekiwi_gateway_connections') or 0.0
    except OSError:  # a timeout while 10,000 robots connect
        return 0.0


def metrics(cdp: Any) -> dict[str, float]:
    return {m['name']: m['value'] for m in cdp.send('Performance.getMetrics')['metrics']}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def writer_commands(shards: int) -> list[list[str]]:
    """Return the `serve` arguments of the writer processes: one per shard (cli.py)."""
    return [['--role', 'writer', '--shard', str(i)] for i in range(shards)]


class Server:
    """The server under test: one `serve` process (default), or the roles (`--roles`).

    Roles: a nats-server (JetStream, temp dir, loopback), a redis-server (presence, no
    persistence), the writer processes (writer_commands), K `serve --role gateway` processes
    the robots connect to, and one `serve --role api` that serves the page, its snapshot and
    the stream (the dashboard bus over NATS, presence from Redis), holding no robots.
    """

    def __init__(self, env: dict[str, str], tmp: Path, *, roles: bool, gateways: int) -> None:
        self._env = env
        self._tmp = tmp
        self.roles = roles
        self.gateways = gateways if roles else 1
        self.procs: list[subprocess.Popen[Any]] = []

    def describe(self) -> str:
        if not self.roles:
            return 'one process (API, stream, gateway, writer thread)'
        shards = int(self._env.get('LEKIWI_WRITER_SHARDS', '2'))
        return (f'roles: nats-server, redis-server, {shards} writer(s), '
                f'{self.gateways} gateway(s), 1 api')

    def _spawn(self, args: list[str], env: dict[str, str] | None = None,
               wait_line: bool = True) -> str:
        proc = subprocess.Popen(args, env=env, text=True,
                                stdout=subprocess.PIPE if wait_line else subprocess.DEVNULL,
                                stderr=None if wait_line else subprocess.DEVNULL)
        self.procs.append(proc)
        if not wait_line:
            return ''
        line = proc.stdout.readline() if proc.stdout else ''
        if 'ready' not in line:
            raise RuntimeError(f'{args[3:]} did not start: {line!r}')
        return line

    def _serve(self, env: dict[str, str], *role: str) -> tuple[str, str]:
        line = self._spawn([sys.executable, '-m', 'lekiwi_fleet_server', 'serve', *role], env)
        match = re.search(r'api=(\S+) gateway=(\S+)', line)
        return (match.group(1), match.group(2)) if match else ('', '')

    def _wait_port(self, port: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f'nothing listens on port {port}')

    def start(self) -> tuple[str, list[str], list[str]]:
        """Start; return the API the page uses, the gateways' URLs and the gateways' APIs."""
        env = dict(self._env)
        if not self.roles:
            api, gateway = self._serve(env)
            return api, [gateway], [api]
        nats = ROOT / '.venv' / 'bin' / 'nats-server'
        nats_port, redis_port = free_port(), free_port()
        self._spawn([str(nats if nats.exists() else 'nats-server'), '-a', '127.0.0.1',
                     '-p', str(nats_port), '-js', '-sd', str(self._tmp / 'nats')],
                    wait_line=False)
        self._spawn(['redis-server', '--port', str(redis_port), '--bind', '127.0.0.1',
                     '--save', '', '--appendonly', 'no', '--dir', str(self._tmp),
                     '--maxclients', '20000'],
                    wait_line=False)
        self._wait_port(nats_port)
        self._wait_port(redis_port)
        # The registry's own pool (broker/presence.py) queues a connect burst's claims.
        env.update(LEKIWI_NATS_URL=f'nats://127.0.0.1:{nats_port}',
                   LEKIWI_REDIS_URL=f'redis://127.0.0.1:{redis_port}/0')
        for writer in writer_commands(int(env.get('LEKIWI_WRITER_SHARDS', '2'))):
            self._spawn([sys.executable, '-m', 'lekiwi_fleet_server', 'serve', *writer], env)
        gateway_urls, gateway_apis = [], []
        for i in range(self.gateways):
            api, gateway = self._serve(dict(env, LEKIWI_GATEWAY_ID=f'bench-gw-{i}'),
                                       '--role', 'gateway')
            gateway_apis.append(api)
            gateway_urls.append(gateway)
        api, _none = self._serve(dict(env, LEKIWI_GATEWAY_ID='bench-api'), '--role', 'api')
        return api, gateway_urls, gateway_apis

    def stop(self) -> None:
        # The servers first (api, gateways, writers), then NATS and Redis they still talk to.
        services = self.procs[:2] if self.roles else []
        for group in (self.procs[len(services):][::-1], services):
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


SNAPSHOT_FIGURES = """() => {
  const t = window.__lekiwi.state.timing || {};
  const nav = performance.getEntriesByType('navigation')[0];
  return { html_ms: nav ? nav.responseEnd : null, stream_open_ms: t.connectAt ?? null,
           snapshot_at_ms: t.snapshotAt ?? null, snapshot_mb: (t.snapshotBytes || 0) / 1e6,
           snapshot_parse_ms: t.parseMs ?? null };
}"""


def snapshot_figures(page: Any) -> dict[str, Any]:
    """Return where the first render's time went, as the page saw it (ms from navigation)."""
    return page.evaluate(SNAPSHOT_FIGURES)  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.robots
    dist = build_dashboard()
    with gateway_bench.Database(gateway_bench.base_url(), f'lekiwi_dash_{n}_{os.getpid()}') \
            as db, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        credentials = gateway_bench.enrol(db.url, n)
        print(f'enrolled {n} robots in {time.perf_counter() - t0:.1f} s', flush=True)
        tokens = Path(tmp) / 'tokens'
        tokens.write_text(''.join(f'{r} {t}\n' for r, t in credentials))
        admin = 'lkw_bench_' + secrets.token_hex(16)
        env = dict(os.environ, LEKIWI_DATABASE_URL=db.url, LEKIWI_API_PORT='0',
                   LEKIWI_GATEWAY_PORT='0', LEKIWI_BOOTSTRAP_ADMIN_TOKEN=admin,
                   LEKIWI_LOG_LEVEL='warning', LEKIWI_MIGRATE_ON_START='false',
                   LEKIWI_DASHBOARD_DIR=str(dist),
                   PYTHONPATH=f'{gateway_bench.SERVER_SRC}{os.pathsep}'
                              f'{os.environ.get("PYTHONPATH", "")}')
        server = Server(env, Path(tmp), roles=args.roles, gateways=args.gateways)
        load = None
        probe = None
        try:
            api, gateway_urls, gateway_apis = server.start()
            gateway = gateway_urls[0]
            print(f'server: {server.describe()}; the page from {api}', flush=True)
            rest(api, admin, 'POST', '/api/v1/accounts',
                 {'name': 'bench', 'role': 'viewer', 'password': PASSWORD})
            probe_token = rest(api, admin, 'POST', '/api/v1/robots',
                               {'robot_id': PROBE, 'tags': ['probe']})['token']
            load = subprocess.Popen(
                [sys.executable, str(BENCH / 'gateway_load.py'), '--gateway-url',
                 ','.join(gateway_urls),
                 '--stream-url', api.replace('http://', 'ws://') + '/api/v1/stream',
                 '--admin-token', admin, '--tokens', str(tokens), '--dashboards', '0',
                 '--warmup', '2',
                 '--duration', str(args.duration + args.connect_timeout + 300)],
                stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + args.connect_timeout
            while (held := sum(connections(g) for g in gateway_apis)) < n * 0.999:
                if load.poll() is not None:
                    raise RuntimeError('the load generator ended before its robots connected')
                if time.monotonic() > deadline:  # measure what a user meets: say it, go on
                    print(f'only {held:.0f} of {n} robots connected after '
                          f'{args.connect_timeout:.0f} s; measuring anyway', flush=True)
                    break
                time.sleep(1.0)
            print(f'{held:.0f} robots connected; warming up {args.warmup} s', flush=True)
            time.sleep(args.warmup)
            probe = Probe(gateway, probe_token)
            probe.start()
            with chromium() as page:
                page.set_default_timeout(120_000)
                page.goto(f'{api}/ui/')
                page.fill('input[name=name]', 'bench')
                page.fill('input[name=password]', PASSWORD)
                page.click('button[type=submit]')
                page.wait_for_selector('#live-status[data-status=live]')
                cdp = page.context.new_cdp_session(page)
                started = time.perf_counter()
                page.goto(f'{api}/ui/')  # a fresh page load with the session cookie
                page.wait_for_function(
                    '(n) => { const c = document.getElementById("row-count");'
                    ' return c && c.textContent === `${n} shown`'
                    ' && document.querySelectorAll("#robot-rows .row").length > 10; }',
                    arg=n + 1, polling='raf')
                first_render_s = time.perf_counter() - started
                # How much of it came after the snapshot arrived: the page's own share.
                after_snapshot_ms = page.evaluate(
                    'performance.now() - window.__lekiwi.state.snapshotAt')
                page.evaluate(WATCH_PROBE, PROBE)
                cdp.send('Performance.enable')
                m0 = metrics(cdp)
                flips_before = len(probe.flips)
                time.sleep(args.duration)
                m1 = metrics(cdp)
                time.sleep(1.5)  # let the last flips arrive
                changes = page.evaluate('window.__probeChanges')
                rows_in_dom = page.evaluate(
                    'document.querySelectorAll("#robot-rows .row").length')
                online = int(page.inner_text('[data-summary=online]'))
                snapshot = snapshot_figures(page)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f'dashboard-bench-{n}.png'))
            flips = probe.flips[flips_before:]
            measured = [(v, t) for v, t in flips if t <= time.time() - 1.5]
            lat = latencies(measured, changes)
            busy = (m1['TaskDuration'] - m0['TaskDuration']) / max(
                1e-9, m1['Timestamp'] - m0['Timestamp'])
            return {
                'robots': n, 'connected': int(held or 0), 'online_at_end': online,
                'first_render_s': first_render_s,
                'render_after_snapshot_ms': after_snapshot_ms,
                'rows_in_dom': rows_in_dom, 'flips': len(measured), 'seen': len(lat),
                'p50_update_ms': percentile(lat, 50), 'p99_update_ms': percentile(lat, 99),
                'max_update_ms': max(lat) if lat else None,
                'heap_mb': m1['JSHeapUsedSize'] / 1e6, 'main_thread_busy': busy,
                'server': server.describe(), **snapshot,
            }
        finally:
            if probe is not None:
                probe.stop.set()
            if load is not None:
                load.terminate()
                load.wait(30)
            server.stop()


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.3f}' if value < 10 else f'{value:.0f}'
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--robots', type=int, default=10_000)
    parser.add_argument('--duration', type=float, default=30.0, help='measured seconds')
    parser.add_argument('--warmup', type=float, default=5.0)
    parser.add_argument('--connect-timeout', type=float, default=300.0,
                        help='seconds to wait for the robots to connect before measuring')
    parser.add_argument('--roles', action='store_true',
                        help='run the server as roles: nats-server, redis-server, writers, '
                             'gateway(s) and an api role serving the page (see Server)')
    parser.add_argument('--gateways', type=int, default=1,
                        help='with --roles: gateway role processes (robots spread over them)')
    args = parser.parse_args()
    why = missing_browser()
    if why:
        print(f'dashboard bench: {why}', file=sys.stderr)
        return 2
    gateway_bench.raise_nofile_limit()
    result = run(args)
    for key, value in result.items():
        print(f'{key:>18}: {fmt(value)}')
    print(f"robots={result['robots']} roles={'yes' if args.roles else 'no'} "
          f"first_render_s={fmt(result['first_render_s'])} "
          f"p50_update_ms={fmt(result['p50_update_ms'])} "
          f"p99_update_ms={fmt(result['p99_update_ms'])} heap_mb={fmt(result['heap_mb'])} "
          f"main_thread_busy={fmt(result['main_thread_busy'])}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
