"""Agent footprint benchmark (issue 4): memory, CPU and uplink bytes of the one-process agent.

Runs the real one-process agent (`python -m lekiwi_agent_ros.agent`: heartbeat, telemetry,
teleop_monitor and fleet_uplink in one executor) for `--duration` seconds (60 by default) while
another process plays a LeKiwi with an operator: a 30 Hz joystick with moving axes and a 15 Hz
~50 KB CompressedImage camera. The uplink is connected to a WebSocket sink on loopback that
speaks the robot protocol (authenticates, pings every second like the gateway, acknowledges
every publish within 50 ms); a counting TCP proxy in front of the sink measures every byte the
agent sends, WebSocket framing included. It prints:
- RSS, PSS and USS of the agent's process (its final image: the ROS wheels' bootstrapper
  re-executes the interpreter in place, so the figures are read once the agent is connected)
  from /proc/PID/smaps_rollup, and where that memory goes (mappings grouped from smaps);
- what each stage of start-up costs, from a probe that builds the agent step by step;
- average CPU % of one core over the measured window, after a warm-up;
- uplink bytes per second, and the messages the sink stored per topic.
The last line sums up: `rss_mb=… uss_mb=… cpu_percent=… uplink_bytes_per_s=…`.

    python tests/bench/agent_footprint.py                 # 60 s measured, about 80 s in all
    python tests/bench/agent_footprint.py --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT_SRC = ROOT / 'src' / 'lekiwi_agent_ros'
ROBOT_ID = 'bench-kiwi'
TOKEN = 'lkw_bench_token'
CAMERA_TOPIC = 'camera/front/image_raw/compressed'
FRAME_BYTES = 50_000
TARGETS = {'rss_mb': 50.0, 'cpu_percent': 1.0, 'uplink_bytes_per_s': 1000.0}

PUBLISHER = textwrap.dedent(
    f"""
    import math, os, sys, time
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Joy

    rclpy.init()
    node = Node('bench_lekiwi', namespace=sys.argv[1])
    joy_pub = node.create_publisher(Joy, 'joy', qos_profile_sensor_data)
    cam_pub = node.create_publisher(CompressedImage, {CAMERA_TOPIC!r}, qos_profile_sensor_data)
    frame = CompressedImage(format='jpeg')
    frame.data = bytes(os.urandom({FRAME_BYTES}))
    started = time.monotonic()

    def joystick():
        t = time.monotonic() - started
        msg = Joy(axes=[math.sin(t), math.cos(t), 0.0, 0.0], buttons=[0] * 8)
        msg.header.stamp = node.get_clock().now().to_msg()
        joy_pub.publish(msg)

    def camera():
        frame.header.stamp = node.get_clock().now().to_msg()
        cam_pub.publish(frame)

    node.create_timer(1 / 30, joystick)
    node.create_timer(1 / 15, camera)
    print('PUBLISHING', flush=True)
    try:
        rclpy.spin(node)
    except Exception:
        pass
    """
)

PROBE = textwrap.dedent(
    """
    import json, secrets, sys, tempfile, time
    def rss():
        for line in open('/proc/self/status'):
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
    stages = [('interpreter', rss())]
    from lekiwi_agent_ros import msg_types
    msg_types.install_lean_imports()
    import asyncio, sqlite3, ssl, websockets.asyncio.client  # noqa
    stages.append(('asyncio, ssl, sqlite3, websockets', rss()))
    import rclpy, rclpy.node  # noqa
    stages.append(('rclpy and its libraries (numpy deferred)', rss()))
    from lekiwi_agent_ros import agent, node_runner  # noqa
    from lekiwi_agent_ros.telemetry import heartbeat, telemetry  # noqa
    from lekiwi_agent_ros.teleop import teleop_monitor  # noqa
    from lekiwi_agent_ros.uplink import fleet_uplink  # noqa
    stages.append(('agent modules and message classes', rss()))
    rclpy.init(args=['--ros-args', '-r', '__ns:=/' + sys.argv[1]])
    node = rclpy.node.Node('probe_first_node')
    stages.append(('DDS participant and first node', rss()))
    node.destroy_node()
    path = tempfile.mkdtemp()
    import rclpy.parameter as p
    overrides = [p.Parameter('server_url', value='ws://127.0.0.1:9/'),
                 p.Parameter('outbox_path', value=path + '/o.sqlite3')]
    nodes = agent.agent_nodes(parameter_overrides=overrides)
    executor = node_runner.make_executor()
    for n in nodes:
        executor.add_node(n)
    for _ in range(20):
        executor.spin_once(timeout_sec=0.05)
    stages.append(('the four agent nodes, their endpoints and threads', rss()))
    print('STAGES ' + json.dumps(stages), flush=True)
    sys._debugmallocstats()  # to stderr: pymalloc's arenas hold the small Python objects
    for n in nodes:
        n.destroy_node()
    rclpy.try_shutdown()
    """
)


class Sink:
    """A robot-protocol sink: auth, 1 s pings, acks within 50 ms; counts what it stores."""

    def __init__(self) -> None:
        self.topics: Counter[str] = Counter()
        self.teleop_active_seen = False
        self.frames = 0
        self.port = 0
        self.proxy_port = 0
        self.up_bytes = 0  # agent -> server, counted by the proxy
        self.down_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        server = await serve(self._handle, '127.0.0.1', 0, ping_interval=1.0, max_size=65536)
        self.port = server.sockets[0].getsockname()[1]
        proxy = await asyncio.start_server(self._proxy, '127.0.0.1', 0)
        self.proxy_port = proxy.sockets[0].getsockname()[1]

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection('127.0.0.1', self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up:
                        self.up_bytes += len(data)
                    else:
                        self.down_bytes += len(data)
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def _handle(self, ws: object) -> None:
        from websockets.exceptions import ConnectionClosed

        pending: dict[str, list[int]] = defaultdict(list)

        async def flush() -> None:
            await asyncio.sleep(0.05)
            for boot_id, seqs in list(pending.items()):
                pending.pop(boot_id)
                ack = {'boot_id': boot_id, 'ranges': [[s, s] for s in sorted(seqs)]}
                await ws.send(json.dumps({'op': 'publish', 'topic': 'fleet/ack', 'msg': ack}))

        try:
            auth = json.loads(await ws.recv())
            if auth.get('op') != 'auth' or auth.get('token') != TOKEN:
                await ws.close(4401, 'auth_failed')
                return
            await ws.send(
                json.dumps(
                    {
                        'op': 'status',
                        'level': 'info',
                        'id': 'auth',
                        'msg': 'authenticated',
                        'protocol': 'lekiwi-fleet/1',
                        'robot_id': auth['robot_id'],
                    }
                )
            )
            async for text in ws:
                frame = json.loads(text)
                self.frames += 1
                if frame.get('op') != 'publish':
                    continue
                self.topics[frame['topic']] += 1
                if frame['topic'] == 'teleop/status' and frame['msg'].get('active'):
                    self.teleop_active_seen = True
                if not pending:
                    asyncio.ensure_future(flush())
                pending[frame['boot_id']].append(frame['seq'])
        except ConnectionClosed:
            pass

    def counters(self) -> tuple[int, int, int]:
        return self.up_bytes, self.down_bytes, self.frames


def smaps_rollup(pid: int) -> dict[str, int]:
    """Return smaps_rollup's figures in kB."""
    values = {}
    for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines()[1:]:
        key, _, rest = line.partition(':')
        values[key.strip()] = int(rest.split()[0])
    return values


NON_ROS_PACKAGES = ('websockets', 'numpy', 'yaml', '_yaml', 'psutil', 'lark', 'em')


def classify(path: str) -> str:
    """Name the group a mapping belongs to."""
    if path.startswith('/dev/shm'):
        return 'Fast DDS shared-memory transport segments'
    if path in ('', '[heap]') or path.startswith('[anon'):
        return 'heap and anonymous (Python objects, Fast DDS/rcl heaps, stacks)'
    if path.startswith('[stack'):
        return 'main thread stack'
    if path.startswith('['):
        return 'kernel mappings (vdso, vvar)'
    name = os.path.basename(path)
    if 'libpython' in name or name.startswith('python3'):
        return 'libpython and the interpreter binary'
    if 'site-packages' in path:
        package = path.split('site-packages/', 1)[1].split('/', 1)[0]
        if package.split('.')[0] in NON_ROS_PACKAGES:
            return 'other Python extension modules (websockets, sqlite3, ssl, ...)'
        return 'ROS 2 and Fast DDS libraries (rclpy, rcl, rmw, type support)'
    if path.startswith((sys.prefix + '/lib/', str(ROOT / 'install'))):
        return 'ROS 2 and Fast DDS libraries (rclpy, rcl, rmw, type support)'
    if 'lib-dynload' in path:
        return 'other Python extension modules (websockets, sqlite3, ssl, ...)'
    if path.startswith(('/lib', '/usr/lib')):
        return 'system libraries (libc, libstdc++, libssl, libcrypto, libsqlite3)'
    return 'other files'


def smaps_breakdown(pid: int) -> dict[str, dict[str, int]]:
    """Group /proc/PID/smaps by what the mappings are; kB of Rss, Pss and private memory."""
    groups: dict[str, dict[str, int]] = defaultdict(lambda: Counter())
    current = 'other files'
    for line in Path(f'/proc/{pid}/smaps').read_text().splitlines():
        first = line.split(maxsplit=1)[0]
        if '-' in first and not first.endswith(':'):
            parts = line.split(maxsplit=5)
            current = classify(parts[5] if len(parts) > 5 else '')
            continue
        key, _, rest = line.partition(':')
        if key in ('Rss', 'Pss', 'Private_Clean', 'Private_Dirty'):
            groups[current][key] += int(rest.split()[0])
    return groups


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds of a process."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def threads(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('Threads:'):
            return int(line.split()[1])
    return 0


def wait_until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run_probe(env: dict[str, str]) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, '-c', PROBE, 'probe' + uuid.uuid4().hex[:8]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=AGENT_SRC,
        env=env,
    )
    stages: list[tuple[str, float]] = []
    for line in result.stdout.splitlines():
        if line.startswith('STAGES '):
            stages = [tuple(x) for x in json.loads(line[len('STAGES ') :])]
    for line in result.stderr.splitlines():
        # '# bytes in allocated blocks' of pymalloc: small Python objects (<= 512 bytes)
        if line.startswith('# bytes in allocated blocks'):
            stages.append(('(of which small Python objects in pymalloc arenas)',
                           int(line.split('=')[1].replace(',', '')) / 2**20))
    if not stages:
        print('probe failed:', result.stderr[-2000:])
    return stages


AGENT_WITHOUT_MONITOR = (
    'import sys; from lekiwi_agent_ros import agent; '
    'agent.teleop_monitor_class = lambda: None; sys.exit(agent.main())'
)


def thread_cpu(pid: int) -> dict[str, float]:
    """Return CPU seconds per thread name of a process."""
    ticks = os.sysconf('SC_CLK_TCK')
    totals: dict[str, float] = defaultdict(float)
    for task in Path(f'/proc/{pid}/task').iterdir():
        try:
            name = (task / 'comm').read_text().strip()
            fields = (task / 'stat').read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        totals[name] += (int(fields[11]) + int(fields[12])) / ticks
    return totals


def measure(
    sink: Sink, env: dict[str, str], duration: float, warmup: float, with_monitor: bool,
    params: Sequence[str] = (),
) -> dict | None:
    """Run the agent under load; return its figures over `duration` after `warmup`."""
    namespace = '/bench' + uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix='agent_footprint_'))
    publisher = subprocess.Popen(
        [sys.executable, '-c', PUBLISHER, namespace],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    entry = ['-m', 'lekiwi_agent_ros.agent'] if with_monitor else ['-c', AGENT_WITHOUT_MONITOR]
    agent = subprocess.Popen(
        [sys.executable, *entry, '--ros-args',
         '-r', f'__ns:={namespace}',
         '-p', f'robot_id:={ROBOT_ID}',
         '-p', f'server_url:=ws://127.0.0.1:{sink.proxy_port}/',
         '-p', f'token:={TOKEN}',
         '-p', f'outbox_path:={workdir / "outbox.sqlite3"}',
         *[arg for param in params for arg in ('-p', param)]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=AGENT_SRC,
        env=env,
    )  # fmt: skip
    agent_log: list[str] = []
    threading.Thread(
        target=lambda: agent_log.extend(iter(agent.stdout.readline, '')), daemon=True
    ).start()
    heartbeats = sink.topics['fleet/heartbeat']
    try:
        if not wait_until(lambda: sink.topics['fleet/heartbeat'] > heartbeats, 30.0):
            print('the agent did not connect:\n' + ''.join(agent_log[-30:]))
            return None
        time.sleep(warmup)
        pid = agent.pid
        up0, down0, frames0 = sink.counters()
        topics0 = Counter(sink.topics)
        threads0 = thread_cpu(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        peak_rss = 0
        while time.monotonic() - t0 < duration:
            time.sleep(min(1.0, duration))
            peak_rss = max(peak_rss, smaps_rollup(pid)['Rss'])
            if agent.poll() is not None:
                print('the agent exited:\n' + ''.join(agent_log[-30:]))
                return None
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        threads1 = thread_cpu(pid)
        up1, down1, frames1 = sink.counters()
        result = {
            'pid': pid,
            'elapsed': t1 - t0,
            'cpu_percent': 100.0 * (cpu1 - cpu0) / (t1 - t0),
            'threads': {
                name: 100.0 * (threads1.get(name, 0.0) - threads0.get(name, 0.0)) / (t1 - t0)
                for name in threads1
            },
            'thread_count': threads(pid),
            'uplink': (up1 - up0) / (t1 - t0),
            'downlink': (down1 - down0) / (t1 - t0),
            'frames': frames1 - frames0,
            'rollup': smaps_rollup(pid),
            'groups': smaps_breakdown(pid),
            'peak_rss': peak_rss,
        }
        stored = Counter(sink.topics)
        stored.subtract(topics0)
        result['stored'] = stored
        return result
    finally:
        stop(agent)
        stop(publisher)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--duration', type=float, default=60.0, help='measured seconds')
    parser.add_argument('--warmup', type=float, default=5.0, help='seconds before measuring')
    parser.add_argument(
        '--split-duration',
        type=float,
        default=20.0,
        help='measured seconds of a second run without teleop_monitor (0: skip)',
    )
    parser.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                        help='an agent parameter to try (repeatable), e.g. input_poll_hz:=5.0')
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(random.randint(150, 199)))
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(AGENT_SRC), env.get('PYTHONPATH')]))
    sink = Sink()
    print(f'agent footprint: {args.duration:g} s measured after {args.warmup:g} s warm-up, '
          f'ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}')
    if args.param:
        print('agent parameters: ' + ' '.join(args.param))
    full = measure(sink, env, args.duration, args.warmup, with_monitor=True, params=args.param)
    if full is None:
        return 1
    bare = None
    if args.split_duration > 0:
        bare = measure(sink, env, min(args.split_duration, args.duration), args.warmup, False,
                       params=args.param)
    stages = run_probe(env)

    rollup, elapsed = full['rollup'], full['elapsed']
    rss = rollup['Rss'] / 1024
    pss = rollup['Pss'] / 1024
    uss = (rollup['Private_Clean'] + rollup['Private_Dirty']) / 1024
    cpu_percent, uplink = full['cpu_percent'], full['uplink']
    print(f'\nagent process {full["pid"]}: {full["thread_count"]} threads')
    print(f'  RSS  {rss:6.1f} MB  (peak seen {full["peak_rss"] / 1024:.1f} MB)')
    print(f'  PSS  {pss:6.1f} MB  (anon {rollup["Pss_Anon"] / 1024:.1f}, file '
          f'{rollup["Pss_File"] / 1024:.1f}, shmem {rollup["Pss_Shmem"] / 1024:.1f})')
    print(f'  USS  {uss:6.1f} MB  (private clean {rollup["Private_Clean"] / 1024:.1f}, '
          f'private dirty {rollup["Private_Dirty"] / 1024:.1f})')
    print('\nwhere the memory goes (smaps, MB):')
    print(f'  {"group":66s} {"RSS":>6s} {"PSS":>6s} {"USS":>6s}')
    for name, values in sorted(full['groups'].items(), key=lambda kv: -kv[1]['Rss']):
        private = values['Private_Clean'] + values['Private_Dirty']
        print(f'  {name:66s} {values["Rss"] / 1024:6.1f} {values["Pss"] / 1024:6.1f} '
              f'{private / 1024:6.1f}')
    if stages:
        print('\nwhat each start-up stage adds (RSS of a probe building it step by step, MB):')
        previous = 0.0
        for name, value in stages:
            if name.startswith('('):
                print(f'  {name:52s} {value:6.1f}')
                continue
            print(f'  {name:52s} {value:6.1f}  (+{value - previous:.1f})')
            previous = value
    print(f'\nCPU: {cpu_percent:.2f} % of one core over {elapsed:.1f} s '
          f'(30 Hz joystick + 15 Hz {FRAME_BYTES // 1000} KB frames in)')
    busy = sorted(full['threads'].items(), key=lambda kv: -kv[1])
    print('  by thread: ' + ', '.join(f'{n} {v:.2f} %' for n, v in busy if v > 0.005))
    if bare is not None:
        print(f'  without teleop_monitor (same load, {bare["elapsed"]:.0f} s): '
              f'{bare["cpu_percent"]:.2f} %; so teleop_monitor, which receives the joystick '
              f'and camera, costs about {cpu_percent - bare["cpu_percent"]:.2f} %')
    print(f'uplink: {uplink:.0f} bytes/s to the server (WebSocket frames and handshake bytes), '
          f'{full["downlink"]:.0f} bytes/s back (acks, pings)')
    per_topic = ', '.join(f'{t} {n / elapsed:.2f}/s' for t, n in sorted(full['stored'].items()))
    print(f'messages stored by the sink: {per_topic}; frames {full["frames"]}; '
          f'teleop seen active: {sink.teleop_active_seen}')
    verdicts = {
        'rss_mb': rss < TARGETS['rss_mb'],
        'cpu_percent': cpu_percent < TARGETS['cpu_percent'],
        'uplink_bytes_per_s': uplink < TARGETS['uplink_bytes_per_s'],
    }
    print('targets: ' + ', '.join(
        f'{k} < {TARGETS[k]:g}: {"met" if ok else "NOT met"}' for k, ok in verdicts.items()))
    if not verdicts['rss_mb']:
        print('  RSS: the interpreter, rclpy and Fast DDS libraries and one DDS participant alone '
              'exceed 50 MB here (see the stages above); file-backed pages are shared with '
              'every other ROS process on the robot, so PSS and USS are the fairer figures.')
    print(f'rss_mb={rss:.1f} uss_mb={uss:.1f} cpu_percent={cpu_percent:.2f} '
          f'uplink_bytes_per_s={uplink:.0f} pss_mb={pss:.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
