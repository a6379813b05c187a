"""Simulated robots of the deploy benchmark: the real executor and transfer code, one process.

Run by tests/bench/deploy.py. Each robot is a thread: one WebSocket to the gateway speaking
lekiwi-fleet/1 (auth, then `send_action_goal` in, `action_result` out, as the uplink relays it),
and a real `DeployExecutor` with `RobotSteps` (manifest, differential blob download over HTTP
with the robot's token, verify, hard-link assembly, pre-check, symlink switch, a supervised
application process, post-check, commit) under its own release directory. The application is
`sleep` (no rclpy per robot: 100 ROS processes would measure Python start-up, not deployment),
and the health rule is that it stays alive for `--settle-s`. Prints one line per robot on exit.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lekiwi_agent_ros.deploy.executor import DeployExecutor, Goal, StateFile
from lekiwi_agent_ros.deploy.health import HealthRules
from lekiwi_agent_ros.deploy.robot_steps import RobotSteps, StepsConfig
from lekiwi_agent_ros.deploy.supervisor import AppSupervisor


def robot(robot_id: str, token: str, args: argparse.Namespace, stop: threading.Event) -> None:
    root = Path(args.root) / robot_id
    config = StepsConfig(root, args.api, robot_id, token, min_free_bytes=0, poll_s=0.05)
    supervisor = AppSupervisor(['sleep', '3600'], root / 'app.pid', stop_timeout_s=2.0)
    steps = RobotSteps(config, supervisor, HealthRules(settle_s=args.settle_s))
    executor = DeployExecutor(steps, StateFile(root / 'state.json'))
    executor.recover()
    with connect(args.gateway, open_timeout=30, max_size=2**20) as ws:
        ws.send(json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                            'protocol': ['lekiwi-fleet/1']}))
        while not stop.is_set():
            try:
                frame = json.loads(ws.recv(timeout=1.0))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            if frame.get('op') != 'send_action_goal':
                continue
            a = frame['args']
            goal = Goal(a['deployment_id'], a['release_version'], a['manifest_url'],
                        a['manifest_sha256'], a.get('health_timeout_s', 60.0), a.get('force'))
            previous = executor.current
            started = time.monotonic()
            outcome = executor.run(goal, lambda *x: None)
            values = {'success': outcome.success, 'final_version': outcome.final_version,
                      'rolled_back': outcome.rolled_back, 'message': outcome.message,
                      'status': outcome.status, 'transferred_bytes': outcome.transferred_bytes,
                      'full_bytes': outcome.full_bytes,
                      'duration_s': time.monotonic() - started, 'previous_version': previous}
            ws.send(json.dumps({'op': 'action_result', 'id': frame['id'],
                                'action': 'fleet/deploy', 'status': 4 if outcome.success else 6,
                                'result': outcome.success, 'values': values}))
    supervisor.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--gateway', required=True)
    parser.add_argument('--api', required=True)
    parser.add_argument('--root', required=True)
    parser.add_argument('--robots', required=True, help='JSON file: {robot_id: token}')
    parser.add_argument('--settle-s', type=float, default=1.0)
    args = parser.parse_args()
    tokens = json.loads(Path(args.robots).read_text())
    stop = threading.Event()
    threads = [threading.Thread(target=robot, args=(r, t, args, stop), daemon=True)
               for r, t in tokens.items()]
    for t in threads:
        t.start()
    print('robots ready', flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
