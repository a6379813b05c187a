"""Admission end to end: the real agent without a token asks, an admin accepts, it comes online.

The real fleet server (PostgreSQL) and the real one-process agent with
`request_admission:=true` and no token file: the request shows in the inventory as pending,
the admin accepts it over REST, the agent receives its token on the same connection, writes it
0600 and is online without reconnecting; restarted, it authenticates with the stored token
and its key's proof (the token alone is refused).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from system_harness import FleetServerProcess, ProcessGroup, start_agent, wait_until
from websockets.sync.client import connect


def test_an_agent_without_a_token_is_admitted_and_keeps_its_token(
        pg_url: str, processes: ProcessGroup, ros_domain: str, tmp_path: Path) -> None:
    domain = os.environ.get('ROS_DOMAIN_ID') or ros_domain
    server = FleetServerProcess(processes, database_url=pg_url, data_dir=tmp_path / 'server')
    server.start()
    token_file = tmp_path / 'robot' / 'token'
    outbox = tmp_path / 'robot' / 'outbox.db'
    agent = start_agent(processes, domain, robot_id='kiwi-adm', server_url=server.gateway_url,
                        token_file=token_file, outbox_path=outbox,
                        extra=['-p', 'request_admission:=true'])
    pending = wait_until(lambda: server.request('GET', '/api/v1/inventory/admissions'), 40,
                         message=f'the admission request\n{agent.output()}')
    assert [p['robot_id'] for p in pending] == ['kiwi-adm']
    entry = wait_until(lambda: next((e for e in server.request('GET', '/api/v1/inventory')
                                     if e['key'] == 'kiwi-adm'), None), 10)  # next refresh
    assert entry['status'] == 'pending' and not token_file.exists()
    key_file = tmp_path / 'robot' / 'admission_key.pem'
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # kept next to the outbox

    accepted = server.request('POST', '/api/v1/inventory/admissions/kiwi-adm/accept',
                              {'fingerprint': pending[0]['fingerprint']})
    assert accepted['status'] == 'accepted' and 'token' not in accepted
    wait_until(lambda: token_file.exists() and token_file.read_text().strip(), 20,
               message=f'the token file\n{agent.output()}')
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    online = wait_until(lambda: (r := server.robot('kiwi-adm')) and r['status'] == 'online'
                        and r, 40, message=f'the admitted robot online\n{agent.output()}')
    assert f'key:{pending[0]["fingerprint"]}' in online['tags']
    assert agent.output().count('asking the server for admission') == 1  # one connection

    agent.stop()
    wait_until(lambda: (r := server.robot('kiwi-adm')) and r['status'] == 'offline', 20)
    again = start_agent(processes, domain, robot_id='kiwi-adm', server_url=server.gateway_url,
                        token_file=token_file, outbox_path=outbox,
                        extra=['-p', 'request_admission:=true'])
    wait_until(lambda: (r := server.robot('kiwi-adm')) and r['status'] == 'online', 40,
               message=f'the robot back with its stored token\n{again.output()}')
    assert 'asking the server for admission' not in again.output()
    assert server.request('GET', '/api/v1/inventory/admissions') == []
    # It logged in with its token and its key's proof; the token alone (copied off the
    # robot) is refused with a message naming the key it is bound to.
    with connect(server.gateway_url, open_timeout=5) as ws:
        ws.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-adm', 'protocol': ['lekiwi-fleet/1'],
                            'token': token_file.read_text().strip()}))
        reply = json.loads(ws.recv(timeout=10))
    assert reply['code'] == 'auth_failed', reply
    assert f'bound to key {pending[0]["fingerprint"]}' in reply['msg']
    assert server.robot('kiwi-adm')['status'] == 'online'  # the agent's connection stays
