"""Issue 20, guards: live figures from a real agent's heartbeats trip flag guards on the server.

The real one-process agent reports its own figures in its heartbeat (its processes' RSS/USS,
the uplink's ack latency p99, the transport in use) to the real server on PostgreSQL, through
a loopback reverse proxy (tests/http_gate_proxy.py). The REST robot view shows them. Then:
- a memory guard set low (5 MB, so the agent's real RSS is over it: limits are tested by
  setting them low) steps its flag back one step, and the trip's observed figure is the one
  the agent reported;
- the proxy delays every WebSocket chunk by 0.6 s (the agent's own fallback threshold is set
  out of reach, so only the guard can move it): the agent's reported ack p99 goes over 500 ms,
  the `uplink_transport` flag's guard sets the cohort `polling`, the server delivers it by
  `configure` to the uplink's `transport` parameter, and the agent moves to HTTP polling and
  says so in its heartbeat.
Each trip is a FlagGuardTripped on the flag's stream (actor `guard`) and a
RobotFlagGuardTripped on the robot's timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from http_gate_proxy import HttpGateProxy
from system_harness import FleetServerProcess, ProcessGroup, start_agent, wait_until

ROBOT = 'kiwi-guards'


def agent_view(server: FleetServerProcess) -> dict[str, Any]:
    robot = server.robot(ROBOT) or {}
    return robot.get('agent') or {}


def trips(server: FleetServerProcess, flag: str) -> list[dict[str, Any]]:
    return [e for e in server.request('GET', f'/api/v1/flags/{flag}/events')
            if e['type'] == 'FlagGuardTripped']


def timeline_trips(server: FleetServerProcess) -> list[dict[str, Any]]:
    page = server.request('GET', f'/api/v1/robots/{ROBOT}/events?limit=500')
    return [e for e in page['events'] if e['type'] == 'RobotFlagGuardTripped']


def test_guards_trip_on_the_agents_own_heartbeat_figures(
        pg_url: str, processes: ProcessGroup, ros_domain: str, tmp_path: Path) -> None:
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server',
                                env={'LEKIWI_FLAG_TICK_S': '0.2',
                                     'LEKIWI_FLAG_GUARD_COOLDOWN_S': '600'})
    server.start()
    proxy = HttpGateProxy(server.api_port, server.gateway_port)
    try:
        token_file = tmp_path / 'token'
        token_file.write_text(server.enrol(ROBOT, tags=['lab']) + '\n')
        start_agent(processes, ros_domain, robot_id=ROBOT,
                    server_url=f'ws://127.0.0.1:{proxy.port}/', token_file=token_file,
                    outbox_path=tmp_path / 'outbox.db',
                    extra=['-p', f'poll_url:=http://127.0.0.1:{proxy.port}',
                           '-p', 'fallback_latency_p99_ms:=600000.0',
                           '-p', 'long_poll_s:=20.0'])

        # 1. The agent's own figures reach the REST robot view.
        def figures() -> dict[str, Any] | None:
            shown = agent_view(server)
            return shown if shown.get('memory_rss_mb') and shown.get('uplink_ack_p99_ms') \
                is not None and shown.get('transport') == 'websocket' else None

        try:
            shown = wait_until(figures, 90, interval=0.5, message='the agent figures')
        except AssertionError:
            raise AssertionError(f'{server.robot(ROBOT)}\n{processes.dump()[-6000:]}') from None
        assert 20 < shown['memory_rss_mb'] < 400 and 0 < shown['memory_uss_mb'] \
            <= shown['memory_rss_mb'], shown
        assert 0 <= shown['uplink_ack_p99_ms'] < 500, shown
        robot = server.robot(ROBOT)
        assert robot is not None and robot['uplink_transport'] == 'websocket'
        assert robot['transport'] == 'websocket'  # the server's own view agrees

        # 2. Agent memory over the (low) limit: back one step.
        server.request('POST', '/api/v1/flags', {
            'name': 'agent_memory_probe', 'kind': 'boolean', 'default': False,
            'rules': [{'value': True, 'staged': True}], 'step': 3,
            'guards': [{'metric': 'agent_memory_mb', 'above': 5, 'action': 'step_back'}]})
        (trip,) = wait_until(lambda: trips(server, 'agent_memory_probe'), 30,
                             message='the memory guard to trip')
        assert trip['actor'] == 'guard' and 'agent_memory_mb' in trip['summary'], trip
        flag = server.request('GET', '/api/v1/flags/agent_memory_probe')
        assert flag['step'] == 2 and flag['percentage'] == 50, flag
        try:
            (on_timeline,) = wait_until(lambda: timeline_trips(server), 30,
                                        message='the trip on the timeline')
        except AssertionError:
            page = server.request('GET', f'/api/v1/robots/{ROBOT}/events?limit=500')
            raise AssertionError(f"{[e['type'] for e in page['events']]}\n"
                                 f'{processes.dump()[-3000:]}') from None
        data = on_timeline['data']
        assert data['flag'] == 'agent_memory_probe' and data['action'] == 'step_back', data
        assert on_timeline['metadata'].get('actor') == 'guard', on_timeline
        # The cohort's figure is this one robot's own, as its heartbeat reported it.
        assert data['observed'] == data['own'] > 5, data
        assert abs(data['own'] - agent_view(server)['memory_rss_mb']) < 10, data

        # 3. Uplink latency p99 over 500 ms: the cohort gets polling, through the parameter.
        server.request('POST', '/api/v1/flags', {
            'name': 'uplink_transport', 'kind': 'variant', 'default': 'auto',
            'variants': ['auto', 'websocket', 'polling'], 'step': 3,
            'rules': [{'value': 'auto', 'staged': True}],
            'guards': [{'metric': 'uplink_latency_p99_ms', 'above': 500, 'action': 'set',
                        'value': 'polling'}],
            'parameters': ['fleet_uplink:transport']})
        wait_until(lambda: (server.request('GET', f'/api/v1/robots/{ROBOT}/flags')
                            .get('delivered') or {}).get('accepted'), 60,
                   message='the uplink to take transport=auto')
        assert trips(server, 'uplink_transport') == []
        proxy.set_mode('delay', delay_s=0.6)
        (slow,) = wait_until(lambda: trips(server, 'uplink_transport'), 120, interval=0.5,
                             message=f'the latency guard to trip\n{processes.dump()[-4000:]}')
        assert 'uplink_latency_p99_ms' in slow['summary'] and slow['actor'] == 'guard'

        def polling() -> bool:
            robot = server.robot(ROBOT) or {}
            return robot.get('uplink_transport') == 'polling' and \
                robot.get('transport') == 'polling'

        wait_until(polling, 120, interval=0.5,
                   message=f'the agent to poll as the flag says\n{processes.dump()[-6000:]}')
        shown = server.request('GET', f'/api/v1/robots/{ROBOT}/flags')
        assert shown['flags']['uplink_transport'] == 'polling', shown
        assert {'node': 'fleet_uplink', 'name': 'transport', 'value': 'polling',
                'flag': 'uplink_transport'} in shown['delivered']['applied'], shown
        assert len(timeline_trips(server)) == 2
    finally:
        proxy.close()
