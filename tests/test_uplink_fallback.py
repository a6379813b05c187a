"""Issue 20, section 2: the uplink falls back to HTTP long polling, and back, losing nothing.

The real agent (one process) runs against the real fleet server on PostgreSQL through a
loopback reverse proxy (tests/http_gate_proxy.py) that sends HTTP to the API and WebSocket
upgrades to the gateway. The proxy first refuses upgrades (the agent must poll), then lets
them through (it must come back to the WebSocket), then delays every WebSocket chunk by 0.6 s
(the ack latency p99 goes over its 500 ms threshold: it must poll again), then lets them
through again. An emitter publishes numbered FleetEvents at 20 Hz all along. Afterwards, as in
the zero-loss test, per boot the server holds sequences 1..N with no gap, and every event
exactly once; and a command reaches the robot while it polls.
"""

from __future__ import annotations

import sys
import time

from http_gate_proxy import HttpGateProxy
from system_harness import start_agent, wait_until
from test_zero_loss import (
    EMIT_HZ,
    HERE,
    agent_status,
    emitted_timeline,
    ros_env,
    stored_event_counters,
)

ROBOT = 'kiwi-fallback'


def polling_agent_args(proxy: HttpGateProxy) -> list[str]:
    """The agent's parameters of the fallback, set low so that a test takes seconds."""
    return ['-p', 'period_s:=0.25', '-p', 'full_snapshot_period_s:=2.0', '-p', 'rate_hz:=2.0',
            '-p', 'backoff_cap_s:=2.0',
            '-p', f'poll_url:=http://127.0.0.1:{proxy.port}',
            '-p', 'websocket_probe_base_s:=1.0', '-p', 'websocket_probe_cap_s:=2.0',
            '-p', 'fallback_latency_window_s:=3.0', '-p', 'fallback_latency_min_samples:=5',
            '-p', 'long_poll_s:=20.0']


def transport(server) -> str | None:
    robot = server.robot(ROBOT)
    return robot.get('transport') if robot and robot['connected'] else None


def events_stored(server) -> int:
    return len(stored_event_counters(server))


def test_polling_fallback_and_back_loses_and_duplicates_nothing(
        fleet_server, processes, ros_domain, tmp_path, monkeypatch):
    monkeypatch.setattr('test_zero_loss.ROBOT', ROBOT)  # its helpers read the robot id there
    proxy = HttpGateProxy(fleet_server.api_port, fleet_server.gateway_port)
    try:
        proxy.set_mode('refuse')
        token_file = tmp_path / 'robot-token'
        token_file.write_text(fleet_server.enrol(ROBOT, tags=['fallback']))
        start_agent(processes, ros_domain, robot_id=ROBOT,
                    server_url=f'ws://127.0.0.1:{proxy.port}/', token_file=token_file,
                    outbox_path=tmp_path / 'outbox.db', extra=polling_agent_args(proxy))
        # (a) upgrades refused: the robot comes online by polling.
        wait_until(lambda: transport(fleet_server) == 'polling', 60,
                   message=f'the robot online by polling\n{processes.dump()}')
        assert proxy.upgrades_refused >= 1
        emitter = processes.start('emitter', [sys.executable, str(HERE / 'event_emitter.py'),
                                              ROBOT, str(EMIT_HZ), 'durable'],
                                  ros_env(ros_domain))
        wait_until(lambda: events_stored(fleet_server) >= 40, 60,
                   message='events stored while polling')
        answer = fleet_server.request('POST', f'/api/v1/robots/{ROBOT}/commands',
                                      {'command_type': 'ping', 'payload': {}})
        assert answer['accepted'] is True, answer

        # (b) upgrades allowed again: back to the WebSocket.
        proxy.set_mode('pass')
        wait_until(lambda: transport(fleet_server) == 'websocket', 60,
                   message=f'the robot back on the WebSocket\n{processes.dump()}')
        before = events_stored(fleet_server)
        wait_until(lambda: events_stored(fleet_server) >= before + 40, 60,
                   message='events stored over the WebSocket')

        # (c) WebSocket frames delayed 0.6 s each way: p99 over 500 ms, polling again.
        proxy.set_mode('delay', delay_s=0.6)
        wait_until(lambda: transport(fleet_server) == 'polling', 90,
                   message=f'the robot polling after slow acks\n{processes.dump()}')
        before = events_stored(fleet_server)
        wait_until(lambda: events_stored(fleet_server) >= before + 40, 60,
                   message='events stored while polling again')

        # (d) the link is quick again: the WebSocket once more.
        proxy.set_mode('pass')
        wait_until(lambda: transport(fleet_server) == 'websocket', 60,
                   message=f'the robot on the WebSocket at the end\n{processes.dump()}')
        time.sleep(2.0)
        emitter.stop()
        wait_until(lambda: agent_status(processes, ros_domain).get('outbox_pending') == 0, 90,
                   interval=1.0, message='the outbox to drain')
        coverage = fleet_server.request('GET', f'/api/v1/robots/{ROBOT}/sequences')
    finally:
        proxy.close()

    boots = coverage['boots']
    assert len(boots) == 1, boots
    for boot in boots:
        assert boot['gaps'] == [] and boot['ranges'] == [[1, boot['count']]], boot
    counters = stored_event_counters(fleet_server)
    assert len(counters) == len(set(counters)), 'an event was stored twice'
    assert counters == sorted(counters), 'events were stored out of order'
    last = emitted_timeline(emitter.output())[-1][0]
    missing = sorted(set(range(1, last + 1)) - set(counters))
    assert missing == [], f'{len(missing)} events missing, e.g. {missing[:10]}'
    assert last > 160, 'events flowed the whole time'

