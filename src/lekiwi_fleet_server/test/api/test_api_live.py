"""Live paths through the app: commands to a connected robot, the dashboard stream, roslibpy."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from api_harness import ADMIN_TOKEN, BOOT, Api, event_frame, robot_connection
from starlette.websockets import WebSocketDisconnect

from lekiwi_fleet_server.gateway.summary_deltas import apply_delta


def test_command_round_trip_and_errors(api: Api) -> None:
    token = api.enrol('kiwi-cmd')
    offline = api.client.post('/api/v1/robots/kiwi-cmd/commands', headers=api.admin,
                              json={'command_type': 'ping'})
    assert offline.status_code == 409
    ws = robot_connection(api, 'kiwi-cmd', token)
    received: list[dict[str, Any]] = []

    def answer(reply: bool) -> None:
        while True:
            frame = json.loads(ws.recv(timeout=5))
            if frame.get('op') == 'call_service':
                received.append(frame)
                if reply:
                    ws.send(json.dumps({'op': 'service_response', 'service': 'fleet/command',
                                        'id': frame['id'], 'result': True,
                                        'values': {'accepted': True, 'message': 'set'}}))
                return

    responder = threading.Thread(target=answer, args=(True,))
    responder.start()
    response = api.client.post('/api/v1/robots/kiwi-cmd/commands', headers=api.admin,
                               json={'command_type': 'configure', 'payload': {'rate_hz': 2}})
    responder.join(5)
    assert response.status_code == 200, response.text
    assert response.json()['accepted'] and response.json()['message'] == 'set'
    assert json.loads(received[0]['args']['payload_json']) == {'rate_hz': 2}
    assert response.json()['command_id'] == received[0]['id']
    assert api.client.post('/api/v1/robots/kiwi-cmd/commands', headers=api.viewer,
                           json={'command_type': 'ping'}).status_code == 403
    assert api.client.post('/api/v1/robots/kiwi-cmd/commands', headers=api.admin,
                           json={'command_type': 'reboot'}).status_code == 422
    silent = threading.Thread(target=answer, args=(False,))
    silent.start()
    started = time.monotonic()
    timeout = api.client.post('/api/v1/robots/kiwi-cmd/commands', headers=api.admin,
                              json={'command_type': 'ping'})
    silent.join(5)
    assert timeout.status_code == 504 and time.monotonic() - started < 4
    # Revoking a connected robot drops it.
    assert api.client.post('/api/v1/robots/kiwi-cmd/revoke', headers=api.admin).status_code == 204
    with pytest.raises(Exception):  # noqa: B017 - closed with 4401 after an error frame
        for _ in range(5):
            ws.recv(timeout=3)
    assert ws.close_code == 4401


def test_dashboard_stream_gets_snapshot_then_updates(api: Api) -> None:
    token = api.enrol('kiwi-dash')
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': ADMIN_TOKEN}))
        snapshot = json.loads(dash.receive_text())
        assert snapshot['type'] == 'snapshot'
        assert [r['robot_id'] for r in snapshot['robots']] == ['kiwi-dash']
        seen: dict[str, Any] = snapshot['robots'][0]
        assert seen['status'] == 'never_seen'
        ws = robot_connection(api, 'kiwi-dash', token)
        ws.send(json.dumps(event_frame(1, 'kiwi-dash')))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and seen.get('last_seq') != 1:
            update = json.loads(dash.receive_text())
            assert update['type'] == 'update'
            for row in update['robots']:
                # Rows after the snapshot are deltas: the dashboard sets them on what it holds.
                seen = apply_delta(seen, row) if row['robot_id'] == 'kiwi-dash' else seen
        assert seen['status'] == 'online' and seen['last_seq'] == 1
        # What the dashboard holds now is the robot's row (the detail adds the gateway's view).
        detail = api.client.get('/api/v1/robots/kiwi-dash', headers=api.viewer).json()
        assert seen == {k: v for k, v in detail.items()
                        if k not in ('connected', 'transport', 'agent')}  # REST's own views
        ws.close()


def test_dashboard_stream_refuses_bad_token(api: Api) -> None:
    with api.client.websocket_connect('/api/v1/stream') as dash:
        dash.send_text(json.dumps({'op': 'auth', 'token': 'lkw_wrong'}))
        assert json.loads(dash.receive_text())['code'] == 'unauthorized'
        with pytest.raises(WebSocketDisconnect) as info:
            dash.receive_text()
        assert info.value.code == 4401
    headers = {'Authorization': f'Bearer {ADMIN_TOKEN}'}
    with api.client.websocket_connect('/api/v1/stream', headers=headers) as dash:
        assert json.loads(dash.receive_text())['type'] == 'snapshot'


def test_roslibpy_client_authenticates_publishes_and_gets_acks(api: Api) -> None:
    roslibpy = pytest.importorskip('roslibpy')
    token = api.enrol('kiwi-ros')
    ros = roslibpy.Ros(host='127.0.0.1', port=api.services.gateway.port)
    ros.run(timeout=10)
    try:
        # The rosauth shape, sent in order with what follows (Ros.authenticate defers its frame
        # behind later ones, and the gateway wants auth first).
        ros.send_on_ready(roslibpy.Message({'op': 'auth', 'mac': token, 'client': 'kiwi-ros',
                                            'dest': 'fleet', 'rand': 'r', 't': 0,
                                            'level': 'user', 'end': 0}))
        acks: list[dict[str, Any]] = []
        done = threading.Event()

        def on_ack(message: dict[str, Any]) -> None:
            acks.append(message)
            done.set()

        roslibpy.Topic(ros, 'fleet/ack', 'lekiwi_fleet_msgs/msg/Ack').subscribe(on_ack)
        # rosbridge's publish op with the protocol's extra fields (boot_id, seq).
        ros.send_on_ready(roslibpy.Message(event_frame(1, 'kiwi-ros')))
        assert done.wait(5), 'no ack received'
        assert acks[0] == {'boot_id': BOOT, 'ranges': [[1, 1]]}
        page = api.services.store.robot_timeline('kiwi-ros', 0, 100)
        assert any(e.metadata.get('seq') == 1 for e in page.events)
    finally:
        ros.close()
