"""Issue 4: every fleet message reaches the server exactly once through crashes and partitions.

The real agent (one process) runs against the real fleet server on PostgreSQL, behind a loopback
proxy the test can cut. An emitter publishes numbered FleetEvents at 20 Hz and the telemetry node
samples fast, while the test (a) SIGKILLs the server for 10 s and restarts it, (b) SIGKILLs the
agent and restarts it, (c) cuts the connection and restores it. Afterwards, per boot, the server
holds sequences 1..N with no gap and the emitter's events exactly once each: the emitter
publishes on fleet/events' durable contract (transient-local, README), so even the events of
the agent's downtime arrive.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from system_harness import ProcessGroup, ros_env, start_agent, wait_until
from tcp_proxy import CuttableProxy

HERE = Path(__file__).resolve().parent
ROBOT = 'kiwi-chaos'
EMIT_HZ = 20.0
FAST_AGENT = ['-p', 'period_s:=0.25', '-p', 'full_snapshot_period_s:=2.0',
              '-p', 'rate_hz:=2.0', '-p', 'backoff_cap_s:=2.0']


def agent_status(processes: ProcessGroup, domain: str) -> dict:
    """Ask the running agent's fleet_uplink/get_status service (in a process of its own)."""
    probe = processes.start('status', [sys.executable, str(HERE / 'agent_status.py')],
                            ros_env(domain))
    probe.popen.wait(timeout=30)
    lines = [line for line in probe.output().splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else {'error': probe.output()}


def emitted_timeline(emitter_output: str) -> list[tuple[int, float]]:
    """Return (count, time) pairs the emitter printed."""
    return [(int(n), float(t)) for n, t in re.findall(r'emitted (\d+) at ([\d.]+)',
                                                      emitter_output)]


def rematched_at(emitter_output: str) -> float:
    """Return when the restarted agent's subscription matched the emitter's publisher."""
    # The uplink subscribes to fleet/events twice (volatile and transient-local readers), and a
    # durable publisher matches both: the restarted agent's first one is the third match.
    times = [float(t) for total, t in re.findall(r'matched total=(\d+) \S+ at ([\d.]+)',
                                                  emitter_output) if int(total) >= 3]
    assert times, f'the restarted agent never subscribed:\n{emitter_output}'
    return times[0]


def emission_time(timeline: list[tuple[int, float]], n: int) -> float:
    """Interpolate when the emitter published event n."""
    before = max(((c, t) for c, t in timeline if c <= n), default=timeline[0])
    return before[1] + (n - before[0]) / EMIT_HZ


def stored_event_counters(server) -> list[int]:
    """Return the emitter counters of every test.tick event the server stored, in order."""
    counters, after = [], 0
    while True:
        page = server.request('GET', f'/api/v1/robots/{ROBOT}/events?after={after}&limit=1000')
        for event in page['events']:
            if event['type'] == 'RobotEventReported' and event['data']['event_type'] == 'test.tick':
                counters.append(int(event['data']['payload']['n']))
        if page['next_after'] is None:
            return counters
        after = page['next_after']


def online_with_boot(server, other_than: str | None = None) -> dict | None:
    robot = server.robot(ROBOT)
    if robot and robot['status'] == 'online' and robot['connected'] and robot['boot_id'] \
            and robot['boot_id'] != other_than:
        return robot
    return None


@pytest.mark.timeout(300)
def test_no_message_lost_or_duplicated_through_crashes_and_partitions(
        fleet_server, processes, ros_domain, tmp_path):
    proxy = CuttableProxy('127.0.0.1', fleet_server.gateway_port)
    try:
        token_file = tmp_path / 'robot-token'
        token_file.write_text(fleet_server.enrol(ROBOT, tags=['chaos']))
        outbox = tmp_path / 'outbox.db'
        agent_args = dict(robot_id=ROBOT, server_url=f'ws://127.0.0.1:{proxy.port}/',
                          token_file=token_file, outbox_path=outbox, extra=FAST_AGENT)
        agent = start_agent(processes, ros_domain, **agent_args)
        wait_until(lambda: online_with_boot(fleet_server), 30,
                   message=f'the robot online\n{processes.dump()}')
        emitter = processes.start('emitter', [sys.executable, str(HERE / 'event_emitter.py'),
                                              ROBOT, str(EMIT_HZ), 'durable'],
                                  ros_env(ros_domain))
        wait_until(lambda: len(stored_event_counters(fleet_server)) >= 10, 30,
                   message='the first events stored')

        # (a) the server dies without warning and is away for 10 s.
        fleet_server.kill()
        time.sleep(10)
        fleet_server.start()
        first_boot = wait_until(lambda: online_with_boot(fleet_server), 60,
                                message='the robot back after the server restart')['boot_id']

        # (b) the agent dies without warning and starts again on the same outbox.
        agent.kill(signal.SIGKILL)
        agent_down_at = time.time()
        time.sleep(1.0)
        agent = start_agent(processes, ros_domain, **agent_args)
        wait_until(lambda: online_with_boot(fleet_server, other_than=first_boot), 60,
                   message='the restarted agent online')
        agent_back_at = time.time()

        # (c) the network between robot and server goes away for 4 s.
        time.sleep(2.0)
        proxy.cut()
        time.sleep(4.0)
        proxy.restore()
        wait_until(lambda: online_with_boot(fleet_server), 60,
                   message='the robot back after the partition')
        time.sleep(2.0)
        emitter.stop()

        # Everything the outbox holds drains, then the server's record is complete.
        wait_until(lambda: agent_status(processes, ros_domain).get('outbox_pending') == 0, 90,
                   interval=1.0, message='the outbox to drain')
        coverage = fleet_server.request('GET', f'/api/v1/robots/{ROBOT}/sequences')
    finally:
        proxy.close()

    boots = coverage['boots']
    assert len(boots) >= 2, 'the agent restart starts a new boot'
    for boot in boots:
        assert boot['gaps'] == [] and boot['ranges'] == [[1, boot['count']]], boot
    assert sum(b['count'] for b in boots) > 200, 'messages flowed the whole time'

    counters = stored_event_counters(fleet_server)
    assert len(counters) == len(set(counters)), 'an event was stored twice'
    timeline = emitted_timeline(emitter.output())
    last = timeline[-1][0]
    missing = sorted(set(range(1, last + 1)) - set(counters))
    # The durable contract: the events published while no agent ran arrive from the
    # publisher's history when the restarted agent subscribes; none is missing.
    subscribed_again = rematched_at(emitter.output())
    assert subscribed_again <= agent_back_at + 5.0
    down = [n for n in range(1, last + 1)
            if agent_down_at <= emission_time(timeline, n) <= subscribed_again]
    assert down, 'events were published while the agent was down'
    assert missing == [], (
        f'{len(missing)} events missing, e.g. {missing[:10]}; the agent was down from '
        f'{agent_down_at:.2f} until its subscription matched at {subscribed_again:.2f}')
