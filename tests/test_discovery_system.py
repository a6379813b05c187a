"""Discovery end to end: the real agent's status endpoint, found by a scan, enrolled from the
inventory, then dialling in over its uplink; and `discover` from the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from system_harness import (
    FleetServerProcess,
    ProcessGroup,
    start_agent,
    wait_until,
)


def test_a_scanned_agent_is_enrolled_from_the_inventory_and_comes_online(
        pg_url: str, processes: ProcessGroup, ros_domain: str, tmp_path: Path) -> None:
    token_file = tmp_path / 'robot-token'
    token_file.write_text('not-yet-enrolled')
    # The agent runs before the server knows it: its uplink is refused, its status endpoint
    # answers. Port 0: the endpoint's real port is read from its log line.
    agent = start_agent(processes, ros_domain, robot_id='kiwi-found',
                        server_url='ws://127.0.0.1:9/', token_file=token_file,
                        outbox_path=tmp_path / 'outbox.db',
                        extra=['-p', 'discovery_enabled:=true', '-p', 'status_port:=0',
                               '-p', 'mdns_announce:=false', '-p', 'backoff_cap_s:=1.0'])
    line = wait_until(lambda: agent.find_line('status endpoint on'), 30,
                      message=f'the status endpoint\n{agent.output()}')
    port = int(re.search(r'127\.0\.0\.1:(\d+)', line).group(1))  # type: ignore[union-attr]

    # `discover` from the command line finds it (table and JSON).
    done = subprocess.run([sys.executable, '-m', 'lekiwi_fleet_server', 'discover',
                           '127.0.0.1', '--agent-port', str(port), '--rosbridge-port',
                           str(port), '--json'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = wait_until(lambda: json.loads(subprocess.run(
        [sys.executable, '-m', 'lekiwi_fleet_server', 'discover', '127.0.0.1', '--agent-port',
         str(port), '--rosbridge-port', str(port), '--json'], capture_output=True, text=True,
        timeout=60).stdout)['entries'], 30, interval=0.5,
        message='discover to list the agent (after its first heartbeat)')
    assert found[0]['robot_id'] == 'kiwi-found' and found[0]['sources']['scan']['port'] == port

    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server',
                                env={'LEKIWI_DISCOVERY_AGENT_PORT': str(port),
                                     'LEKIWI_DISCOVERY_ROSBRIDGE_PORT': str(port)})
    server.start()
    scan = server.request('POST', '/api/v1/inventory/scans', {'targets': ['127.0.0.1/32']})
    result = wait_until(lambda: (s := server.request(
        'GET', f'/api/v1/inventory/scans/{scan["id"]}'))['state'] == 'done' and s, 30)
    assert result['found'] == ['kiwi-found']
    entry = next(e for e in server.request('GET', '/api/v1/inventory?enrolled=false')
                 if e['key'] == 'kiwi-found')
    assert entry['status'] == 'discovered' and entry['agent_version']

    enrolled = server.request('POST', '/api/v1/inventory/kiwi-found/enrol', {'tags': ['lab']})
    token_file.write_text(enrolled['token'])
    # Restarted towards this server: the uplink reads its token file at each connection.
    agent.stop()
    start_agent(processes, ros_domain, robot_id='kiwi-found', server_url=server.gateway_url,
                token_file=token_file, outbox_path=tmp_path / 'outbox.db')
    online = wait_until(lambda: next((e for e in server.request('GET', '/api/v1/inventory')
                                      if e['key'] == 'kiwi-found' and 'uplink' in e['sources']
                                      and e['presence']), None), 40,
                        message=f'the enrolled robot online\n{processes.dump()}')
    assert online['status'] == 'enrolled' and online['presence']['state'] == 'online'
    assert set(online['sources']) == {'scan', 'uplink'}
