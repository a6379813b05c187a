"""The legacy source in the real app: SSH-polled robots enter the same ingest as agents.

Real pieces: create_app with its store (SQLite and PostgreSQL), its robot gateway, the legacy
poller against a real sshd, `import-legacy` through the CLI, and an agent connection over the
gateway's WebSocket for the hand-over from polling to the agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from ssh_lab import SshLab
from websockets.sync.client import connect

from lekiwi_fleet_server.cli import main as cli_main
from lekiwi_fleet_server.legacy.source import GatewayIngest
from lekiwi_fleet_server.legacy.status import LEGACY_AGENT_VERSION, heartbeat_msg, parse_status
from lekiwi_fleet_server.settings import Settings

ADMIN_TOKEN = 'lkw_test_admin_token_0123456789'
ADMIN = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
BOOT = 'aaaabbbbccccdddd'


def until(check: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'not true within {timeout_s} s: {check}')


def next_ack(ws: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    """Return the robot's next ack, past other frames (the flag engine's configure command,
    sent to every robot that connects, may come first on a loaded host)."""
    deadline = time.monotonic() + timeout_s
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get('topic') == 'fleet/ack':
            return frame  # type: ignore[no-any-return]


def flags_of(client: TestClient, robot_id: str) -> list[dict[str, Any]]:
    page = client.get(f'/api/v1/robots/{robot_id}/events?limit=1000', headers=ADMIN)
    assert page.status_code == 200, page.text
    return [e for e in page.json()['events'] if 'legacy.agent_silent' in json.dumps(e)]


def write_inventory(lab: SshLab, path: Path) -> None:
    rows = ['robot_id,host,user,port,tags']
    for host in [*lab.hosts, lab.hanging, lab.refusing]:
        rows.append(f'{host.robot_id},{host.host},{host.user},{host.port},legacy;lab')
    path.write_text('\n'.join(rows) + '\n')


def test_polled_robots_go_online_hand_over_to_their_agent_and_a_silent_agent_is_flagged(
        ssh_lab: SshLab, database_url: str, tmp_path: Path, monkeypatch: Any,
        capsys: Any) -> None:
    env = {'LEKIWI_DATABASE_URL': database_url, 'LEKIWI_DATA_DIR': str(tmp_path),
           'LEKIWI_LEGACY_SSH_KEY_FILE': str(ssh_lab.key_file),
           'LEKIWI_LEGACY_KNOWN_HOSTS_FILE': str(ssh_lab.known_hosts)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    inventory = tmp_path / 'fleet.csv'
    write_inventory(ssh_lab, inventory)
    tokens = tmp_path / 'tokens.csv'
    assert cli_main(['migrate']) == 0
    assert cli_main(['import-legacy', str(inventory), '--tokens-out', str(tokens)]) == 0
    assert 'enrolled 5, already enrolled 0' in capsys.readouterr().out
    hosts_file = tmp_path / 'legacy-hosts.json'
    written = hosts_file.read_bytes()
    assert cli_main(['import-legacy', str(inventory)]) == 0  # twice changes nothing
    assert 'enrolled 0, already enrolled 5' in capsys.readouterr().out
    assert hosts_file.read_bytes() == written
    token_of = dict(line.split(',') for line in tokens.read_text().split())
    assert tokens.stat().st_mode & 0o077 == 0

    settings = Settings(gateway_port=0, bootstrap_admin_token=ADMIN_TOKEN,
                        commit_interval_ms=20,
                        legacy_poll_interval_s=0.2, legacy_poll_timeout_s=1.0,
                        presence_timeout_s=2.0)
    from lekiwi_fleet_server.app import create_app

    with TestClient(create_app(settings)) as client:
        def robot(robot_id: str) -> dict[str, Any]:
            response = client.get(f'/api/v1/robots/{robot_id}', headers=ADMIN)
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        polled, handed = ssh_lab.hosts[0].robot_id, ssh_lab.hosts[1].robot_id
        for host in ssh_lab.hosts:
            row = until(lambda h=host: (r := robot(h.robot_id))['status'] == 'online' and r)
            assert row['agent_version'] == LEGACY_AGENT_VERSION
            assert row['resources']['memory_total_bytes'] > 0
            assert sorted(row['tags']) == ['lab', 'legacy']
        for dead in (ssh_lab.hanging, ssh_lab.refusing):
            assert robot(dead.robot_id)['status'] == 'never_seen'

        # The agent of one robot dials in: the poller stops for it.
        gateway = client.app.state.services.gateway  # type: ignore[attr-defined]
        ws = connect(f'ws://127.0.0.1:{gateway.port}/', open_timeout=5)
        ws.send(json.dumps({'op': 'auth', 'robot_id': handed, 'token': token_of[handed],
                            'protocol': ['lekiwi-fleet/1']}))
        assert json.loads(ws.recv(timeout=5))['msg'] == 'authenticated'
        msg = heartbeat_msg(parse_status(''), robot_id=handed, boot_id=BOOT, sequence=1,
                            now=time.time())
        msg['agent_version'] = '0.1.0'
        ws.send(json.dumps({'op': 'publish', 'topic': 'fleet/heartbeat', 'boot_id': BOOT,
                            'seq': 1, 'msg': msg}))
        assert next_ack(ws)['msg']['ranges'] == [[1, 1]]
        until(lambda: robot(handed)['agent_version'] == '0.1.0')
        time.sleep(1.0)  # several poll rounds
        assert robot(handed)['agent_version'] == '0.1.0'  # not overwritten by a poll
        assert robot(polled)['agent_version'] == LEGACY_AGENT_VERSION

        # Its agent goes silent while SSH still answers: offline, and flagged once.
        assert flags_of(client, handed) == []  # not polled (so not flagged) while connected
        ws.close()
        until(lambda: robot(handed)['status'] == 'offline')

        until(lambda: flags_of(client, handed))
        time.sleep(1.0)
        assert len(flags_of(client, handed)) == 1
        assert robot(handed)['status'] == 'offline'
        assert robot(polled)['status'] == 'online'


def test_who_is_connected_comes_from_the_router_not_this_gateway() -> None:
    # With several gateways an agent may hold its uplink on another one: the poller (and the
    # migration, which gets the router's `connected` as well) must see it all the same.
    class Here:
        def is_connected(self, _robot_id: str) -> bool:
            return False  # no session on this gateway

    class Router:
        async def connected(self, robot_ids: Collection[str]) -> set[str]:
            return {r for r in robot_ids if r == 'kiwi-elsewhere'}

    ingest = GatewayIngest(Here(), Router())
    assert asyncio.run(ingest.connected(['kiwi-elsewhere', 'kiwi-legacy'])) == {'kiwi-elsewhere'}
    assert asyncio.run(ingest.connected([])) == set()
