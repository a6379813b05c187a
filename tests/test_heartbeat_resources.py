"""Issue 15: the real agent leaves unchanged resources out of its heartbeats to the real
gateway, and the server's read model keeps the last resources it was sent."""

from __future__ import annotations

import time

from system_harness import start_agent, wait_until


def test_unchanged_resources_stay_off_the_wire_and_the_server_keeps_them(
        fleet_server, processes, ros_domain, tmp_path):
    token_file = tmp_path / 'robot-token'
    token_file.write_text(fleet_server.enrol('kiwi-lean', tags=['system-test']) + '\n')
    start_agent(processes, ros_domain, robot_id='kiwi-lean',
                server_url=fleet_server.gateway_url, token_file=token_file,
                outbox_path=tmp_path / 'outbox.db', extra=['-p', 'rate_hz:=4.0'])

    def listed():
        robot = fleet_server.robot('kiwi-lean')
        return robot if robot and robot.get('heartbeat_sequence') else None

    first = wait_until(listed, 30, message=f'the robot to be listed\n{processes.dump()}')
    # ResourceUsage's 12 fields and the agent's own 3 (issue 20: agent_rss_mb, agent_uss_mb,
    # uplink_ack_p99_ms), which travel and are left out with them.
    assert len(first['resources']) == 15 and first['resources']['memory_total_bytes'] > 0
    assert first['resources']['agent_rss_mb'] > 0
    # Uptime moves with every sample: heartbeats that carried resources would change it. Newer
    # heartbeats with the same uptime came without resources, and the server kept the last.
    previous, kept = first, None
    deadline = time.monotonic() + 30.0
    while kept is None and time.monotonic() < deadline:
        time.sleep(0.6)
        current = fleet_server.robot('kiwi-lean')
        if (current['heartbeat_sequence'] >= previous['heartbeat_sequence'] + 2
                and current['boot_id'] == previous['boot_id']
                and current['resources'] == previous['resources']):
            kept = current
        previous = current
    assert kept is not None, 'every heartbeat carried changed resources'
    assert kept['resources']['memory_total_bytes'] > 0 and kept['status'] == 'online'
    assert len(kept['resources']) == 15
