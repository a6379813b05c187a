"""Reconnect benchmark (issue 14): how fast a fleet comes back after a server restart.

Runs the real fleet server (`python -m lekiwi_fleet_server serve`, SQLite in a temporary
directory unless LEKIWI_DATABASE_URL names another database) and `--robots` robots in this
process, each the agent's real uplink: an on-disk `Outbox`, an `UplinkSession`, the default
`Backoff` (0.5 s base, 10 s cap, full jitter) and an `UplinkClient` (one thread and WebSocket
each), no ROS. Once every robot is authenticated, the server is restarted (`--mode term`:
SIGTERM, which closes every robot with 1012 before it exits, then a new server on the same port;
`--mode kill`: SIGKILL, no close frame) and each robot's time from the restart command until it
is authenticated again is recorded. It prints the spread of the returns (the busiest second of
arrivals, what a thundering herd would show) and ends with one line:

    robots=N mode=term server_down_s=... p50_back_s=... p99_back_s=... max_back_s=...
    peak_per_s=... missing=...

Run: .venv/bin/python tests/bench/reconnect.py --robots 1000 [--mode kill]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / 'src' / 'lekiwi_agent_ros'), str(ROOT / 'src' / 'lekiwi_fleet_server')]

from lekiwi_agent_ros.uplink.backoff import Backoff, BackoffConfig  # noqa: E402
from lekiwi_agent_ros.uplink.outbox import Outbox, TopicPolicy  # noqa: E402
from lekiwi_agent_ros.uplink.uplink_client import UplinkClient  # noqa: E402
from lekiwi_agent_ros.uplink.uplink_session import (  # noqa: E402
    ActionGoal,
    Command,
    CommandOutcome,
    SessionConfig,
    UplinkSession,
)

POLICIES = {'fleet/events': TopicPolicy(state=False)}


class Handler:
    """Commands are answered, deploy goals refused (none are sent here)."""

    def handle_command(self, command: Command) -> CommandOutcome:
        return CommandOutcome(True, 'ok')

    def start_action_goal(self, goal: ActionGoal) -> str | None:
        return 'no deploy action server'

    def cancel_action_goal(self, goal_id: str) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, '-m', 'lekiwi_fleet_server', 'serve'], env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ''
    if not re.search(r'gateway=(\S+)', line):
        proc.kill()
        raise SystemExit(f'server did not start: {line!r}')
    return proc


def enrol(url: str, count: int) -> dict[str, str]:
    from lekiwi_fleet_server.domain.tokens import generate_token, hash_token
    from lekiwi_fleet_server.store.sql_store import SqlFleetStore

    store = SqlFleetStore.open(url)
    tokens = {}
    try:
        for i in range(count):
            robot_id, token = f'bench-{i:05d}', generate_token()
            store.enrol_robot(robot_id, hash_token(token), (), now=time.time())
            tokens[robot_id] = token
    finally:
        store.close()
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--robots', type=int, default=1000)
    parser.add_argument('--mode', choices=('term', 'kill'), default='term')
    parser.add_argument('--timeout', type=float, default=90.0, help='give up after this')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix='lekiwi-reconnect-'))
    url = os.environ.get('LEKIWI_DATABASE_URL') or f'sqlite:///{work / "fleet.db"}'
    port = free_port()
    env = dict(os.environ, LEKIWI_DATABASE_URL=url, LEKIWI_DATA_DIR=str(work),
               LEKIWI_API_PORT='0', LEKIWI_GATEWAY_PORT=str(port), LEKIWI_LOG_LEVEL='warning',
               PYTHONPATH=os.pathsep.join([str(ROOT / 'src' / 'lekiwi_fleet_server'),
                                           os.environ.get('PYTHONPATH', '')]))
    subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', 'migrate'], env=env,
                   check=True, capture_output=True)
    tokens = enrol(url, args.robots)
    server = start_server(env)
    gateway = f'ws://127.0.0.1:{port}/'

    def quiet(_level: int, _text: str) -> None:
        return None

    clients: list[tuple[str, UplinkClient, Outbox]] = []
    try:
        for robot_id, token in tokens.items():
            outbox = Outbox(str(work / f'{robot_id}.db'), f'boot-{robot_id}', POLICIES)
            session = UplinkSession(SessionConfig(robot_id=robot_id, agent_version='bench'),
                                    outbox, Handler(), time.monotonic, quiet)
            backoff = Backoff(BackoffConfig(), random.random, time.monotonic)
            client = UplinkClient(gateway, session, backoff, lambda t=token: t, quiet)
            client.start()
            clients.append((robot_id, client, outbox))
        deadline = time.monotonic() + args.timeout
        while sum(c.connected for _r, c, _o in clients) < len(clients):
            if time.monotonic() > deadline:
                raise SystemExit('not every robot connected at the start')
            time.sleep(0.1)
        print(f'{len(clients)} robots connected to {gateway} ({url.split(":")[0]})', flush=True)

        restarted_at = time.monotonic()
        server.send_signal(signal.SIGTERM if args.mode == 'term' else signal.SIGKILL)
        server.wait(60)
        back: dict[str, float] = {}
        seen_down: set[str] = set()  # a robot counts once it was seen disconnected
        lock = threading.Lock()

        def watch() -> None:
            while len(back) < len(clients) and time.monotonic() < restarted_at + args.timeout:
                now = time.monotonic()
                for robot_id, client, _outbox in clients:
                    if robot_id in back:
                        continue
                    if not client.connected:
                        seen_down.add(robot_id)
                    elif robot_id in seen_down:
                        with lock:
                            back[robot_id] = now - restarted_at
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        server = start_server(env)
        up_at = time.monotonic()
        server_down_s = up_at - restarted_at
        print(f'server back after {server_down_s:.2f} s', flush=True)
        watcher.join(args.timeout + 5)
    finally:
        for _robot_id, client, outbox in clients:
            client.stop(1.0)
            outbox.close()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)

    times = sorted(back.values())
    missing = len(clients) - len(times)

    def pct(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] if times else float('nan')

    per_second = Counter(int(t) for t in times)
    print('arrivals per second after the restart command: ' + ', '.join(
        f'{s}s:{n}' for s, n in sorted(per_second.items())))
    print(f'after the server was up again: p99 {pct(0.99) - server_down_s:.2f} s, '
          f'max {pct(1.0) - server_down_s:.2f} s')
    print(f'robots={len(clients)} mode={args.mode} server_down_s={server_down_s:.2f} '
          f'p50_back_s={pct(0.50):.2f} p99_back_s={pct(0.99):.2f} max_back_s={pct(1.0):.2f} '
          f'peak_per_s={max(per_second.values(), default=0)} missing={missing}')
    return 0 if missing == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
