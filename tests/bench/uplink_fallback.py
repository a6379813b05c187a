"""Uplink fallback benchmark (issue 20): switch times to HTTP polling and back, and its bytes/s.

Runs the real fleet server on PostgreSQL (`scripts/ensure_postgres.sh`, a throw-away database)
and the real agent (one process, every node, default parameters but `poll_url`) behind the
loopback reverse proxy of the tests (tests/http_gate_proxy.py: HTTP to the API, WebSocket
upgrades to the gateway). With the robot on the WebSocket, the proxy starts refusing upgrades
and drops the open WebSocket: "to polling" is the time from then until the first ack reaches
the robot over HTTP. Then the agent polls for `--poll-s` seconds, and the proxy counts the
polling connections' bytes on the wire, both ways (the agent's own traffic: heartbeat,
teleop status, telemetry deltas, their acks, the long polls). Then upgrades are allowed again:
"back" is the time from then until the first ack over the WebSocket (the WebSocket probe backs
off from `websocket_probe_base_s`, 5 s by default, doubling, so it depends on how long the
WebSocket was blocked). The same bytes are measured on the WebSocket for comparison.

    to_polling_s=... back_to_ws_s=... polling_up_Bps=... polling_down_Bps=...
    polling_Bps=... ws_Bps=...

Run: .venv/bin/python tests/bench/uplink_fallback.py [--poll-s 20] (source scripts/env.sh
first, after colcon build).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests'))

from http_gate_proxy import HttpGateProxy  # noqa: E402
from system_harness import (  # noqa: E402
    FleetServerProcess,
    ProcessGroup,
    create_database,
    drop_database,
    start_agent,
    wait_until,
)

ROBOT = 'kiwi-bench-fallback'


def transport(server: FleetServerProcess) -> str | None:
    robot = server.robot(ROBOT)
    return robot.get('transport') if robot and robot['connected'] else None


def measure_bytes(proxy: HttpGateProxy, counts, seconds: float) -> tuple[float, float]:
    up0, down0 = counts()
    time.sleep(seconds)
    up1, down1 = counts()
    return (up1 - up0) / seconds, (down1 - down0) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--poll-s', type=float, default=20.0, help='seconds of polling measured')
    parser.add_argument('--ws-s', type=float, default=20.0,
                        help='seconds of WebSocket traffic measured')
    args = parser.parse_args()
    base = subprocess.run([str(ROOT / 'scripts' / 'ensure_postgres.sh')], check=True,
                          capture_output=True, text=True).stdout.strip()
    db_url = create_database(base, f'bench_fallback_{uuid.uuid4().hex[:8]}')
    work = Path(tempfile.mkdtemp(prefix='lekiwi-fallback-'))
    processes = ProcessGroup()
    domain = str(int(os.environ.get('ROS_DOMAIN_ID', '0')))
    try:
        server = FleetServerProcess(processes, db_url, work / 'server')
        server.start()
        proxy = HttpGateProxy(server.api_port, server.gateway_port)
        token_file = work / 'token'
        token_file.write_text(server.enrol(ROBOT))
        start_agent(processes, domain, robot_id=ROBOT,
                    server_url=f'ws://127.0.0.1:{proxy.port}/', token_file=token_file,
                    outbox_path=work / 'outbox.db',
                    extra=['-p', f'poll_url:=http://127.0.0.1:{proxy.port}'])
        wait_until(lambda: transport(server) == 'websocket', 60, message='robot on the WebSocket')
        time.sleep(5.0)  # past the first full snapshots
        ws_up, ws_down = measure_bytes(proxy, proxy.ws_byte_counts, args.ws_s)
        print(f'websocket: {ws_up:.0f} B/s up, {ws_down:.0f} B/s down over {args.ws_s:g} s')

        proxy.mark()
        blocked = time.monotonic()
        proxy.set_mode('refuse')
        wait_until(lambda: proxy.first_ack['http'], 60, message='the first ack over HTTP')
        to_polling = proxy.first_ack['http'] - blocked  # type: ignore[operator]
        print(f'to polling: first ack over HTTP {to_polling:.2f} s after upgrades were refused')
        wait_until(lambda: transport(server) == 'polling', 30, message='robot polling')
        time.sleep(2.0)
        up, down = measure_bytes(proxy, proxy.byte_counts, args.poll_s)
        print(f'polling: {up:.0f} B/s up, {down:.0f} B/s down over {args.poll_s:g} s')

        proxy.mark()
        allowed = time.monotonic()
        proxy.set_mode('pass')
        wait_until(lambda: proxy.first_ack['ws'], 120, message='the first ack over the WebSocket')
        back = proxy.first_ack['ws'] - allowed  # type: ignore[operator]
        print(f'back: first ack over the WebSocket {back:.2f} s after upgrades were allowed '
              f'(blocked for {allowed - blocked:.1f} s)')
        print('load: one agent (every node, defaults), the server, PostgreSQL, on a shared '
              '2-core machine')
        print(f'to_polling_s={to_polling:.2f} back_to_ws_s={back:.2f} '
              f'polling_up_Bps={up:.0f} polling_down_Bps={down:.0f} '
              f'polling_Bps={up + down:.0f} ws_Bps={ws_up + ws_down:.0f}')
        proxy.close()
    finally:
        processes.stop_all()
        drop_database(base, db_url)
    return 0


if __name__ == '__main__':
    sys.exit(main())
