"""ZeroMQ relay benchmark (issue 15): latency the lekiwi_zmq_bridge adds, and its CPU.

A stand-in LeKiwi host and a stand-in LeKiwiClient (this process; lerobot's host needs the
robot's motors) speak the host's wire format over real ZeroMQ sockets on loopback: 30 Hz
commands (JSON actions, the velocity changing every one, so the bridge sees a person driving)
and 30 Hz observations of ~50 KB (JSON with a base64 JPEG-sized payload), each stamped with
its send time. Two pairs run at the same time, so both meet the same machine load: one pair
connected directly, the other through the real node (`python -m
lekiwi_agent_ros.zmq_bridge.lekiwi_zmq_bridge`, its own process, nobody subscribed to its
frames). Added latency = relayed percentile - direct percentile, per direction. CPU is the
bridge process's share of one core over the run.

    python tests/bench/zmq_relay.py             # 15 s per phase
    python tests/bench/zmq_relay.py --seconds 30
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import zmq

ROOT = Path(__file__).resolve().parents[2]
AGENT_SRC = ROOT / 'src' / 'lekiwi_agent_ros'


def conflated(context: zmq.Context, kind: int) -> zmq.Socket:
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.CONFLATE, 1)
    return socket


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float('nan')


def run_phase(seconds: float, host_cmd: zmq.Socket, host_obs: zmq.Socket,
              client_cmd: zmq.Socket, client_obs: zmq.Socket) -> tuple[list[float], list[float]]:
    """Send 30 Hz both ways for `seconds`; return one-way latencies (ms) per direction."""
    command_ms: list[float] = []
    observation_ms: list[float] = []
    stop = threading.Event()
    padding = base64.b64encode(os.urandom(37_000)).decode()  # ~50 KB of JSON

    def receive(socket: zmq.Socket, into: list[float]) -> None:
        while not stop.is_set():
            if socket.poll(100):
                data = json.loads(socket.recv())
                into.append((time.perf_counter_ns() - data['sent_ns']) / 1e6)

    threads = [threading.Thread(target=receive, args=(host_cmd, command_ms)),
               threading.Thread(target=receive, args=(client_obs, observation_ms))]
    for thread in threads:
        thread.start()
    period = 1 / 30
    next_send = time.perf_counter()
    end = next_send + seconds
    i = 0
    while time.perf_counter() < end:
        i += 1
        client_cmd.send_string(json.dumps({'x.vel': 0.1 + (i % 7) * 0.01, 'y.vel': 0.0,
                                           'theta.vel': 0.0, 'arm_gripper.pos': 5.0,
                                           'sent_ns': time.perf_counter_ns()}))
        host_obs.send_string(json.dumps({'x.vel': 0.0, 'front': padding,
                                         'sent_ns': time.perf_counter_ns()}))
        next_send += period
        time.sleep(max(0.0, next_send - time.perf_counter()))
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    return command_ms, observation_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seconds', type=float, default=15.0)
    args = parser.parse_args()
    context = zmq.Context()

    def host() -> tuple[zmq.Socket, zmq.Socket, int, int]:
        cmd, obs = conflated(context, zmq.PULL), conflated(context, zmq.PUSH)
        return (cmd, obs, cmd.bind_to_random_port('tcp://127.0.0.1'),
                obs.bind_to_random_port('tcp://127.0.0.1'))

    def client(cmd_port: int, obs_port: int) -> tuple[zmq.Socket, zmq.Socket]:
        cmd, obs = conflated(context, zmq.PUSH), conflated(context, zmq.PULL)
        cmd.connect(f'tcp://127.0.0.1:{cmd_port}')
        obs.connect(f'tcp://127.0.0.1:{obs_port}')
        return cmd, obs

    relayed_host = host()
    direct_host = host()
    relay_cmd_port, relay_obs_port = 25555 + os.getpid() % 1000, 26555 + os.getpid() % 1000
    env = dict(os.environ, PYTHONPATH=f'{AGENT_SRC}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    bridge = subprocess.Popen(
        [sys.executable, '-m', 'lekiwi_agent_ros.zmq_bridge.lekiwi_zmq_bridge', '--ros-args',
         '-r', f'__ns:=/zmq_bench_{os.getpid()}', '-p', 'bind_address:=127.0.0.1',
         '-p', f'command_port:={relay_cmd_port}', '-p', f'observation_port:={relay_obs_port}',
         '-p', f'host_command_port:={relayed_host[2]}',
         '-p', f'host_observation_port:={relayed_host[3]}'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results: dict[str, tuple[list[float], list[float]]] = {}
    try:
        time.sleep(4.0)  # the bridge's interpreter, rclpy and DDS start
        if bridge.poll() is not None:
            print(bridge.stdout.read() if bridge.stdout else '')
            return 1
        process = psutil.Process(bridge.pid)
        relayed_client = client(relay_cmd_port, relay_obs_port)
        direct_client = client(direct_host[2], direct_host[3])
        time.sleep(0.5)
        cpu0, t0 = sum(process.cpu_times()[:2]), time.monotonic()
        pairs = {'relayed': (relayed_host, relayed_client), 'direct': (direct_host, direct_client)}
        threads = [threading.Thread(target=lambda k=k, h=h, c=c: results.__setitem__(
            k, run_phase(args.seconds, h[0], h[1], c[0], c[1])))
            for k, (h, c) in pairs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu = (sum(process.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) * 100.0
        rss_mb = process.memory_info().rss / 2**20
    finally:
        bridge.terminate()
        bridge.wait(timeout=15)
    direct, relayed = results['direct'], results['relayed']
    names = ('commands', 'observations')
    added = {}
    for name, base, through in zip(names, direct, relayed, strict=True):
        p50 = percentile(through, 0.5) - percentile(base, 0.5)
        p99 = percentile(through, 0.99) - percentile(base, 0.99)
        added[name] = (p50, p99)
        print(f'{name}: {len(through)} relayed ({len(base)} direct); one-way direct p50 '
              f'{percentile(base, 0.5):.3f} ms p99 {percentile(base, 0.99):.3f} ms; through the '
              f'relay p50 {percentile(through, 0.5):.3f} ms p99 {percentile(through, 0.99):.3f} '
              f'ms; added p50 {p50:.3f} ms p99 {p99:.3f} ms; mean '
              f'{statistics.fmean(through) if through else float("nan"):.3f} ms')
    print(f'bridge process: {cpu:.2f} % of one core, RSS {rss_mb:.1f} MB, '
          f'{args.seconds:.0f} s at 30 Hz commands + 30 Hz ~50 KB observations (and a direct '
          'pair alongside)')
    print(f'command_added_p50_ms={added["commands"][0]:.3f} '
          f'command_added_p99_ms={added["commands"][1]:.3f} '
          f'observation_added_p50_ms={added["observations"][0]:.3f} '
          f'observation_added_p99_ms={added["observations"][1]:.3f} '
          f'relay_cpu_percent={cpu:.2f} rss_mb={rss_mb:.1f}')
    context.destroy(linger=0)
    return 0


if __name__ == '__main__':
    sys.exit(main())
