"""The inventory stream (/api/v1/stream/inventory): a snapshot, then discovery's changes and
nothing else; operators only."""

from __future__ import annotations

import json
from collections.abc import Callable

from discovery_app import ADMIN, enrol, robot_socket
from fastapi.testclient import TestClient


def test_it_sends_the_inventory_then_its_changes_and_no_robot_updates(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    token = enrol(client, 'kiwi-inv')
    port = client.app.state.services.gateway.port  # type: ignore[attr-defined]
    with client.websocket_connect('/api/v1/stream/inventory', headers=ADMIN) as stream:
        first = json.loads(stream.receive_text())
        assert first['type'] == 'inventory_snapshot' and first['entries'] == []
        ws = robot_socket(port, 'kiwi-inv', token)
        came = json.loads(stream.receive_text())
        assert came['type'] == 'inventory', came  # not the robot's 'update' of the fleet
        assert came['entries'][0]['key'] == 'kiwi-inv'
        assert list(came['entries'][0]['entry']['sources']) == ['uplink']
        assert came['presence'][0]['state'] == 'online'
        ws.close()
        went = json.loads(stream.receive_text())
        assert went['type'] == 'inventory'
        assert went['entries'] == [{'key': 'kiwi-inv', 'entry': None}]
    with client.websocket_connect('/api/v1/stream/inventory', headers=ADMIN) as again:
        assert json.loads(again.receive_text())['entries'] == []
    assert client.app.state.services.discovery.bus.subscriber_count() == 0  # type: ignore


def test_it_refuses_the_unauthenticated_and_robot_tokens(
        make_client: Callable[..., TestClient]) -> None:
    client = make_client(stream_auth_timeout_s=1.0)
    token = enrol(client, 'kiwi-inv')
    for headers in ({'Authorization': f'Bearer {token}'}, {'Authorization': 'Bearer lkw_no'}):
        with client.websocket_connect('/api/v1/stream/inventory', headers=headers) as stream:
            assert json.loads(stream.receive_text()) == {'type': 'error',
                                                         'code': 'unauthorized'}
