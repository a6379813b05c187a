"""Load generator of the gateway benchmark: N simulated robots and dashboard subscribers.

Run by tests/bench/gateway.py in its own process. Each robot speaks protocol lekiwi-fleet/2 (or
/1 with --protocol 1) over
one picows WebSocket: auth, a heartbeat every second (phases spread evenly), a telemetry delta
every `--telemetry-period` seconds. It times every frame from send to its ack (durable commit)
and, through the dashboard stream, to the first dashboard update naming that sequence number.
Prints one JSON object with the figures on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import sys
import time
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

BOOT_ID_BYTES = 8


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.commit_ms: list[float] = []
        # The same samples by kind: history seqs (`ranges`, stored before their ack) and
        # lekiwi-fleet/2 state seqs (`state_ranges`, acked once the writer's memory has them).
        self.durable_ms: list[float] = []
        self.state_ms: list[float] = []
        self.dashboard_ms: list[float] = []
        self.sent = 0
        self.acked = 0
        self.errors: dict[str, int] = {}
        self.disconnects = 0
        self.commands = 0  # fleet/command calls answered (the flag engine's configure)
        self.dashboard_updates = 0
        self.dashboard_bytes = 0
        self.dashboard_measured_bytes = 0  # received by all dashboards while measuring
        self.loop_lag_ms: list[float] = []  # how late each send tick ran: this loop's own delay
        self.commit_second: list[int] = []  # the measured second of each commit_ms sample
        self.lag_second: list[int] = []  # ... and of each loop_lag_ms sample
        self.second = 0


class SimRobot(WSListener):
    """One simulated robot connection."""

    def __init__(self, robot_id: str, token: str, stats: Stats, protocol: int = 2) -> None:
        super().__init__()
        # lekiwi-fleet/2: heartbeats numbered by `state_seq` (their own space), as the agent does.
        self.v2 = protocol == 2
        self.robot_id = robot_id
        self.token = token
        self.stats = stats
        self.boot_id = random.randbytes(BOOT_ID_BYTES).hex()
        self.seq = 0
        self.heartbeat_seq = 0
        self.telemetry_seq = 0
        self.transport: WSTransport | None = None
        # seq, sec, nanosec, sequence, cpu_percent, uptime_s: the fields that change.
        self.heartbeat_template = (
            b'{"op":"publish","topic":"fleet/heartbeat","boot_id":"%s","%s":%%d,"msg":{'
            b'"header":{"stamp":{"sec":%%d,"nanosec":%%d},"frame_id":""},"robot_id":"%s",'
            b'"agent_version":"bench","software_version":"1.0.0","boot_id":"%s",'
            b'"sequence":%%d,"state":1,"teleop_active":false,"teleop_score":0.0,"resources":{'
            b'"cpu_percent":%%.3f,"load_average_1min":0.5,"memory_used_bytes":900000000,'
            b'"memory_total_bytes":8000000000,"disk_used_bytes":10000000000,'
            b'"disk_total_bytes":64000000000,"temperature_c":50.0,"battery_voltage_v":12.0,'
            b'"battery_percent":80.0,"network_tx_bytes_per_s":600.0,'
            b'"network_rx_bytes_per_s":200.0,"uptime_s":%%.3f}}}'
        ) % (self.boot_id.encode(), b'state_seq' if self.v2 else b'seq', robot_id.encode(),
             self.boot_id.encode())
        self.authed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.sent_at: dict[int, float] = {}  # seq -> perf_counter at send (ack pops it)
        self.seen_at: dict[int, float] = {}  # seq -> send time, for dashboard matching
        # v2: state seq (= heartbeat sequence) -> perf_counter at send, for acks and dashboards
        self.state_sent_at: dict[int, float] = {}
        self.state_seen_at: dict[int, float] = {}
        self.open = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.open = True
        transport.send(WSMsgType.TEXT, orjson.dumps({
            'op': 'auth', 'robot_id': self.robot_id, 'token': self.token,
            'protocol': ['lekiwi-fleet/2' if self.v2 else 'lekiwi-fleet/1'],
            'agent_version': 'bench'}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.perf_counter()
        data = orjson.loads(frame.get_payload_as_bytes())
        if data.get('topic') == 'fleet/ack':
            stats = self.stats
            msg = data['msg']
            for key, sent_at, kind in (('ranges', self.sent_at, stats.durable_ms),
                                       ('state_ranges', self.state_sent_at, stats.state_ms)):
                for first, last in msg.get(key, ()):
                    for seq in range(first, last + 1):
                        t0 = sent_at.pop(seq, None)
                        if t0 is not None:
                            stats.acked += 1
                            if stats.measuring:
                                stats.commit_ms.append((now - t0) * 1000.0)
                                stats.commit_second.append(stats.second)
                                kind.append(stats.commit_ms[-1])
        elif data.get('op') == 'call_service':
            self._answer(data)
        elif data.get('op') == 'status':
            if data.get('level') == 'info':
                if not self.authed.done():
                    self.authed.set_result(True)
            else:
                code = data.get('code', '?')
                self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
                if not self.authed.done():
                    self.authed.set_result(False)

    def _answer(self, call: dict[str, Any]) -> None:
        # As the agent does (docs/robot-protocol.md, section 4): a `configure` (the flag
        # engine's, sent to every robot once it connects) is answered with a report of what
        # was applied; a robot that never answered would be sent it again every few seconds.
        args = call.get('args') or {}
        message = 'pong'
        if args.get('command_type') == 'configure':
            payload = orjson.loads(args.get('payload_json') or '{}')
            message = orjson.dumps({'revision': payload.get('revision'),
                                    'flags': payload.get('flags', {}), 'applied': [],
                                    'failed': []}).decode()
        self.stats.commands += 1
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, orjson.dumps({
                'op': 'service_response', 'service': call.get('service'), 'id': call.get('id'),
                'result': True, 'values': {'accepted': True, 'message': message}}))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.open:
            self.stats.disconnects += 1
        self.open = False
        if not self.authed.done():
            self.authed.set_result(False)

    def _publish(self, topic: str, msg: dict[str, Any]) -> None:
        self.seq += 1
        now = time.perf_counter()
        self.sent_at[self.seq] = now
        self.seen_at[self.seq] = now
        self.stats.sent += 1
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps({
            'op': 'publish', 'topic': topic, 'boot_id': self.boot_id, 'seq': self.seq,
            'msg': msg}))

    def heartbeat(self, wall: float) -> None:
        # Formatted into a per-robot template, not encoded from a dict: this process shares the
        # machine's two cores with the server, so every microsecond here is one it lacks.
        self.heartbeat_seq += 1
        now = time.perf_counter()
        if self.v2:
            number = self.heartbeat_seq
            self.state_sent_at[number] = now
            self.state_seen_at[number] = now
        else:
            self.seq += 1
            number = self.seq
            self.sent_at[number] = now
            self.seen_at[number] = now
        self.stats.sent += 1
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, self.heartbeat_template % (
            number, int(wall), int(wall % 1 * 1e9), self.heartbeat_seq,
            random.uniform(5, 60), wall % 100000))

    def telemetry(self, wall: float) -> None:
        self.telemetry_seq += 1
        full = self.telemetry_seq == 1
        # Values a healthy robot reports, consistent with its heartbeat: random temperatures
        # up to 100 °C in the snapshot raised an alarm each telemetry and the next heartbeat
        # (50 °C) cleared it, so a fifth of the robots flapped an alarm every five seconds.
        ranges = {'cpu_percent': (5.0, 60.0), 'temperature_c': (45.0, 55.0),
                  'battery_voltage_v': (11.8, 12.4), 'network_tx_bytes_per_s': (100.0, 1000.0)}
        names = ['cpu_percent', 'temperature_c', 'battery_voltage_v'] if full else [
            'cpu_percent', 'network_tx_bytes_per_s']
        self._publish('fleet/telemetry', {
            'header': {'stamp': {'sec': int(wall), 'nanosec': 0}, 'frame_id': ''},
            'robot_id': self.robot_id, 'boot_id': self.boot_id,
            'sequence': self.telemetry_seq, 'base_sequence': self.telemetry_seq - 1,
            'full_snapshot': full, 'field_names': names,
            'field_values': [round(random.uniform(*ranges[n]), 1) for n in names]})

    def prune(self, older_than: float) -> None:
        for table in (self.sent_at, self.seen_at, self.state_sent_at, self.state_seen_at):
            stale = [s for s, t in table.items() if t < older_than]
            for s in stale:
                del table[s]


class Dashboard(WSListener):
    """A dashboard subscriber of /api/v1/stream: times each robot's newest seq."""

    def __init__(self, token: str, robots: dict[str, SimRobot], stats: Stats,
                 measure: bool) -> None:
        super().__init__()
        self.token, self.robots, self.stats = token, robots, stats
        # Only one dashboard parses updates to time them; parsing every copy would stall this
        # process's loop and inflate the robots' measured ack latencies.
        self.measure = measure
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.fragments: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, orjson.dumps({'op': 'auth', 'token': self.token}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
            if not self.ready.done():
                self.ready.set_result(False)
            return
        if not self.measure and self.ready.done():
            # Only counted: copying 9 MB/s per dashboard out of picows for nothing cost this
            # process (and so the robots' measured latencies) CPU.
            self.stats.dashboard_updates += frame.fin
            self.stats.dashboard_bytes += frame.payload_size
            if self.stats.measuring:
                self.stats.dashboard_measured_bytes += frame.payload_size
            return
        if frame.msg_type == WSMsgType.TEXT and frame.fin:
            self._update(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.TEXT:
            self.fragments = bytearray(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CONTINUATION and self.fragments is not None:
            self.fragments += frame.get_payload_as_bytes()
            if frame.fin:
                payload, self.fragments = bytes(self.fragments), None
                self._update(payload)

    def _update(self, payload: bytes) -> None:
        now = time.perf_counter()
        stats = self.stats
        stats.dashboard_updates += 1
        stats.dashboard_bytes += len(payload)
        if stats.measuring:
            stats.dashboard_measured_bytes += len(payload)
        if self.ready.done() and not (self.measure and stats.measuring):
            return
        update = orjson.loads(payload)
        if not self.ready.done():
            self.ready.set_result(update.get('type') == 'snapshot')
            return
        robots = self.robots
        for row in update.get('robots', ()):
            # A row is a delta (gateway/summary_deltas.py): boot_id only when it changed.
            robot = robots.get(row['robot_id'])
            if robot is None or row.get('boot_id', robot.boot_id) != robot.boot_id:
                continue
            t0 = robot.seen_at.get(row.get('last_seq'))
            if t0 is None and robot.v2:  # a v2 heartbeat moves heartbeat_sequence, not last_seq
                t0 = robot.state_seen_at.get(row.get('heartbeat_sequence'))
            if t0 is not None:
                stats.dashboard_ms.append((now - t0) * 1000.0)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def worst_seconds(stats: Stats, count: int = 3) -> list[dict[str, Any]]:
    """Return the measured seconds of the highest ack p99, with this loop's lag in each.

    A second whose latencies rose while this loop ran on time points at the server; one where
    this loop lagged as much points at the machine (or at this process).
    """
    acks: dict[int, list[float]] = {}
    for second, ms in zip(stats.commit_second, stats.commit_ms, strict=True):
        acks.setdefault(second, []).append(ms)
    lags: dict[int, float] = {}
    for second, ms in zip(stats.lag_second, stats.loop_lag_ms, strict=True):
        lags[second] = max(lags.get(second, 0.0), ms)
    ranked = sorted(((percentile(v, 99) or 0.0, s) for s, v in acks.items()), reverse=True)
    return [{'second': s, 'p99_commit_ms': round(p99, 1),
             'max_loop_lag_ms': round(lags.get(s, 0.0), 1)} for p99, s in ranked[:count]]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    credentials = [line.split() for line in open(args.tokens).read().splitlines() if line]
    robots: dict[str, SimRobot] = {}
    gate = asyncio.Semaphore(args.connect_concurrency)
    started = time.perf_counter()

    # Several gateways (gateway.py --gateways K): robot i connects to gateway i mod K.
    gateway_urls = args.gateway_url.split(',')
    url_of = {rid: gateway_urls[i % len(gateway_urls)] for i, (rid, _t) in enumerate(credentials)}

    async def connect(robot_id: str, token: str) -> None:
        async with gate:
            try:
                _t, robot = await ws_connect(lambda: SimRobot(robot_id, token, stats,
                                                              args.protocol),
                                             url_of[robot_id], websocket_handshake_timeout=30,
                                             read_buffer_init_size=2048)
                if await asyncio.wait_for(robot.authed, 30):  # type: ignore[attr-defined]
                    robots[robot_id] = robot  # type: ignore[assignment]
            except Exception as exc:  # count, do not abort the run
                key = f'connect:{type(exc).__name__}'
                stats.errors[key] = stats.errors.get(key, 0) + 1

    await asyncio.gather(*(connect(rid, tok) for rid, tok in credentials))
    connect_s = time.perf_counter() - started
    # Collections over 10,000 robots' bookkeeping would stall this loop and inflate the
    # latencies it measures: freeze what exists and collect rarely (few cycles are made).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    dashboards = []
    for i in range(args.dashboards):
        _t, dash = await ws_connect(lambda first=(i == 0): Dashboard(args.admin_token, robots,
                                                                     stats, first),
                                    args.stream_url, max_frame_size=256 * 1024 * 1024)
        await asyncio.wait_for(dash.ready, 30)  # type: ignore[attr-defined]
        dashboards.append(dash)

    # Send schedule: robot i sends its heartbeat at phase (i % ticks) of each second.
    order = list(robots.values())
    tick_s = 0.01
    ticks = int(1 / tick_s)
    slots: list[list[SimRobot]] = [order[i::ticks] for i in range(ticks)]
    telemetry_every = max(1, round(args.telemetry_period))
    total_s = args.warmup + args.duration
    t_start = time.perf_counter()
    tick = 0  # the next tick to send: each is sent once, late ones caught up in order
    while True:
        elapsed = time.perf_counter() - t_start
        if elapsed >= total_s:
            break
        if stats.measuring:
            stats.loop_lag_ms.append(max(0.0, elapsed - tick * tick_s) * 1000.0)
            stats.lag_second.append(stats.second)
        # A sleep may end a little early (or late): never send a tick twice, never skip one.
        while tick <= int(elapsed / tick_s):
            second, slot = divmod(tick, ticks)
            stats.measuring = tick * tick_s >= args.warmup
            stats.second = int(tick * tick_s - args.warmup)
            # Forget send times older than 10 s, a tick's robots at a time: pruning all
            # 10,000 at once stalled this loop ~10-30 ms every second, and acks read late
            # look slow.
            cutoff = time.perf_counter() - 10.0
            for robot in slots[slot]:
                robot.prune(cutoff)
            wall = time.time()
            for robot in slots[slot]:
                if robot.open:
                    robot.heartbeat(wall)
                    if (second + slot) % telemetry_every == 0:
                        robot.telemetry(wall)
            tick += 1
        await asyncio.sleep(max(0.0, t_start + tick * tick_s - time.perf_counter()))
    stats.measuring = False
    await asyncio.sleep(1.0)  # let acks of the last frames arrive (not measured)
    held = sum(1 for r in order if r.open)
    result = {
        'robots': len(credentials), 'authenticated': len(robots), 'held': held,
        'connect_s': round(connect_s, 2), 'sent': stats.sent, 'acked': stats.acked,
        'commit_samples': len(stats.commit_ms),
        'p50_commit_ms': percentile(stats.commit_ms, 50),
        'p99_commit_ms': percentile(stats.commit_ms, 99),
        'max_commit_ms': max(stats.commit_ms) if stats.commit_ms else None,
        'durable_samples': len(stats.durable_ms),
        'p50_durable_ack_ms': percentile(stats.durable_ms, 50),
        'p99_durable_ack_ms': percentile(stats.durable_ms, 99),
        'state_samples': len(stats.state_ms),
        'p50_state_ack_ms': percentile(stats.state_ms, 50),
        'p99_state_ack_ms': percentile(stats.state_ms, 99),
        'dashboard_samples': len(stats.dashboard_ms),
        'p50_dashboard_ms': percentile(stats.dashboard_ms, 50),
        'p99_dashboard_ms': percentile(stats.dashboard_ms, 99),
        'p99_loop_lag_ms': percentile(stats.loop_lag_ms, 99),
        'max_loop_lag_ms': max(stats.loop_lag_ms) if stats.loop_lag_ms else None,
        'worst_seconds': worst_seconds(stats),
        'dashboard_updates': stats.dashboard_updates,
        'dashboard_mb': round(stats.dashboard_bytes / 1e6, 1),
        'dashboard_kb_per_s': round(stats.dashboard_measured_bytes / 1e3 / args.duration
                                    / max(1, len(dashboards))),
        'errors': stats.errors, 'disconnects': stats.disconnects, 'commands': stats.commands,
        'measured_s': args.duration, 'nofile': raise_nofile_limit(),
    }
    for robot in order:
        if robot.transport is not None:
            robot.transport.disconnect()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--gateway-url', required=True, help='comma-separated for several')
    parser.add_argument('--stream-url', required=True)
    parser.add_argument('--admin-token', required=True)
    parser.add_argument('--tokens', required=True, help='file of "robot_id token" lines')
    parser.add_argument('--dashboards', type=int, default=5)
    parser.add_argument('--warmup', type=float, default=5.0)
    parser.add_argument('--duration', type=float, default=20.0)
    parser.add_argument('--telemetry-period', type=float, default=5.0)
    parser.add_argument('--protocol', type=int, choices=(1, 2), default=2,
                        help='2: heartbeats in the state space (the agent); 1: v1 robots')
    parser.add_argument('--connect-concurrency', type=int, default=200)
    args = parser.parse_args()
    raise_nofile_limit()
    result = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
