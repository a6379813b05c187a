"""Server-dialled ingest from a rosbridge v2 endpoint written for the test (a stand-in).

The stand-in follows ROSBRIDGE_PROTOCOL.md (standins.py); the test checks what the server sent
it against the spec, then that what it published reaches the same store, presence and events
as an uplink robot's frames, that bad messages are refused without harm, and that the server
reconnects with backoff when the robot's rosbridge goes away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from discovery_app import ADMIN, enrol, inventory, wait_for
from fastapi.testclient import TestClient
from standins import LoopThread, RosbridgeStandIn, heartbeat

from lekiwi_fleet_server.discovery.rosbridge_ingest import parse_dial_target
from lekiwi_fleet_server.domain.topics import TOPIC_TYPES


def robot(client: TestClient, robot_id: str) -> dict[str, Any]:
    return client.get(f'/api/v1/robots/{robot_id}', headers=ADMIN).json()


def timeline(client: TestClient, robot_id: str) -> list[str]:
    response = client.get(f'/api/v1/robots/{robot_id}/events', headers=ADMIN)
    assert response.status_code == 200, response.text
    return [e['type'] for e in response.json()['events']]


def test_a_dialled_rosbridge_robot_is_ingested_like_an_uplink_one(
        make_client: Callable[..., TestClient]) -> None:
    with LoopThread() as loop:
        bridge = loop.call(RosbridgeStandIn('127.0.0.1', 0).start())
        port = bridge._server.sockets[0].getsockname()[1]  # port 0: read the real one
        client = make_client(rosbridge_robots=[f'kiwi-rb=ws://127.0.0.1:{port}/'],
                             rosbridge_backoff_cap_s=0.5)
        # Not enrolled yet: listed as discovered, nothing ingested.
        entry = wait_for(lambda: inventory(client).get('kiwi-rb'))
        assert entry['status'] == 'discovered'
        assert entry['sources']['rosbridge']['ingest'] == 'not_enrolled'
        assert not any(bridge.subscribed(f'/{t}') for t in TOPIC_TYPES)
        enrol(client, 'kiwi-rb')
        wait_for(lambda: bridge.subscribed('/fleet/heartbeat'))
        # What the server sent is valid rosbridge v2 (3.2.4 subscribe): op, topic, type, id.
        subs = [f for f in bridge.received if f['op'] == 'subscribe']
        assert {f['topic'] for f in subs} == {f'/{t}' for t in TOPIC_TYPES}
        for frame in subs:
            assert set(frame) <= {'op', 'id', 'topic', 'type', 'throttle_rate',
                                  'queue_length', 'fragment_size', 'compression'}
            assert isinstance(frame['id'], str) and frame['type'] == TOPIC_TYPES[
                frame['topic'][1:]] and isinstance(frame['queue_length'], int)
        for seq in (1, 2, 3):
            assert loop.call(bridge.publish('/fleet/heartbeat',
                                            heartbeat('kiwi-rb', seq, 'rb-1.0', 1764190000 + seq)))
        row = wait_for(lambda: (r := robot(client, 'kiwi-rb'))['heartbeat_sequence'] == 3 and r)
        assert row['status'] == 'online' and row['software_version'] == 'rb-1.0'
        assert row['boot_id'].startswith('rb-') and row['last_seq'] == 3
        # The same events as an uplink robot's: enrolled, came online, its version.
        events = timeline(client, 'kiwi-rb')
        assert events[:2] == ['RobotEnrolled', 'RobotCameOnline']
        assert 'RobotVersionChanged' in events
        entry = wait_for(lambda: (e := inventory(client)['kiwi-rb'])['presence'] and e)
        assert entry['status'] == 'enrolled' and entry['presence']['state'] == 'online'
        assert set(entry['sources']) == {'rosbridge'}
        assert entry['sources']['rosbridge']['ingest'] == 'dialled'
        # A message that is not valid is refused; the connection and the store stay.
        bad = heartbeat('kiwi-rb', 4)
        del bad['resources']
        # Connections so far: the probe's and the ingest's (more if a loaded host timed one out).
        connections = bridge.connections
        loop.call(bridge.publish('/fleet/heartbeat', bad))
        loop.call(bridge.publish('/fleet/heartbeat', heartbeat('kiwi-rb', 5, 'rb-1.1',
                                                               1764190005)))
        row = wait_for(lambda: (r := robot(client, 'kiwi-rb'))['heartbeat_sequence'] == 5 and r)
        assert row['software_version'] == 'rb-1.1'
        assert bridge.connections == connections  # the refusal did not drop the connection
        # The robot's rosbridge restarts: offline at once, back with backoff, ingesting again.
        loop.call(bridge.drop_clients())
        wait_for(lambda: robot(client, 'kiwi-rb')['status'] == 'offline'
                 or bridge.connections > connections)
        wait_for(lambda: bridge.connections > connections
                 and bridge.subscribed('/fleet/heartbeat'))
        loop.call(bridge.publish('/fleet/heartbeat', heartbeat('kiwi-rb', 1, 'rb-1.2',
                                                               1764190100)))
        wait_for(lambda: robot(client, 'kiwi-rb')['software_version'] == 'rb-1.2')
        assert 'RobotWentOffline' in timeline(client, 'kiwi-rb')

        def states() -> list[str]:
            changes = client.get('/api/v1/inventory/presence', headers=ADMIN).json()
            return [c['state'] for c in changes if c['robot_id'] == 'kiwi-rb']

        wait_for(lambda: len(states()) >= 3)
        assert states()[:3] == ['online', 'offline', 'online']
        loop.call(bridge.stop())


def test_a_silent_dialled_robot_goes_offline_within_the_presence_timeout(
        make_client: Callable[..., TestClient]) -> None:
    with LoopThread() as loop:
        bridge = loop.call(RosbridgeStandIn('127.0.0.1', 0).start())
        port = bridge._server.sockets[0].getsockname()[1]
        client = make_client(rosbridge_robots=[f'kiwi-q=ws://127.0.0.1:{port}/'],
                             rosbridge_backoff_cap_s=0.3)
        enrol(client, 'kiwi-q')
        wait_for(lambda: bridge.subscribed('/fleet/heartbeat'))
        loop.call(bridge.publish('/fleet/heartbeat', heartbeat('kiwi-q', 1)))
        wait_for(lambda: inventory(client).get('kiwi-q', {}).get('presence'))
        # The stand-in answers WebSocket pings (as tornado does), so the robot stays
        # connected while silent: presence counts pongs as life, as for the uplink.
        time.sleep(3.0)
        entry = inventory(client)['kiwi-q']
        assert entry['presence']['state'] in ('online', 'stale')
        loop.call(bridge.stop())
        wait_for(lambda: inventory(client).get('kiwi-q', {}).get('presence', {}).get(
            'state') == 'offline')


@pytest.mark.parametrize('spec', ['kiwi', 'kiwi=http://x/', 'bad id!=ws://x:1/'])
def test_a_malformed_dial_target_is_refused(spec: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - ValueError or the id's ProtocolError
        parse_dial_target(spec)


def test_a_dial_target_names_its_address_and_port() -> None:
    target = parse_dial_target(' kiwi-9 = ws://10.0.0.9:9091/ ')
    assert (target.robot_id, target.address, target.port) == ('kiwi-9', '10.0.0.9', 9091)
