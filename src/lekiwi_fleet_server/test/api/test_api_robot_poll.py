"""The uplink's HTTP long-polling transport against the real app, gateway and store."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from api_harness import BOOT, Api, event_frame, robot_connection
from websockets.exceptions import ConnectionClosed

BASE = '/api/v1/robot/uplink'


def _auth(robot_id: str, token: str) -> bytes:
    return json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                       'protocol': ['lekiwi-fleet/1'], 'agent_version': '0.1.0'}).encode()


def _headers(robot_id: str, token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}', 'X-Robot-Id': robot_id,
            'Content-Type': 'application/x-ndjson'}


def _frames(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _ndjson(frames: list[dict[str, Any]]) -> bytes:
    return b''.join(json.dumps(f).encode() + b'\n' for f in frames)


def _open(api: Api, robot_id: str, token: str) -> list[dict[str, Any]]:
    response = api.client.post(f'{BASE}/session', headers=_headers(robot_id, token),
                               content=_auth(robot_id, token))
    assert response.status_code == 200, response.text
    return _frames(response.text)


def _acked(frames: list[dict[str, Any]]) -> set[int]:
    seqs: set[int] = set()
    for f in frames:
        if f.get('topic') == 'fleet/ack':
            for low, high in f['msg']['ranges']:
                seqs.update(range(low, high + 1))
    return seqs


def test_post_answers_acks_after_commit_and_dedups(api: Api) -> None:
    token = api.enrol('kiwi-poll')
    hello = _open(api, 'kiwi-poll', token)
    assert hello[0]['msg'] == 'authenticated' and hello[0]['protocol'] == 'lekiwi-fleet/1'
    assert api.services.gateway.is_connected('kiwi-poll')
    body = _ndjson([event_frame(seq, 'kiwi-poll') for seq in (1, 2, 3)])
    response = api.client.post(f'{BASE}/frames', headers=_headers('kiwi-poll', token),
                               content=body)
    assert response.status_code == 200, response.text
    assert response.headers['content-type'].startswith('application/x-ndjson')
    assert _acked(_frames(response.text)) == {1, 2, 3}
    # Acked means committed: the store has them.
    coverage = api.client.get('/api/v1/robots/kiwi-poll/sequences', headers=api.admin).json()
    assert coverage['boots'][0]['ranges'] == [[1, 3]]
    # Sent again (an ack lost on the way): acked again, stored once.
    again = api.client.post(f'{BASE}/frames', headers=_headers('kiwi-poll', token), content=body)
    assert _acked(_frames(again.text)) == {1, 2, 3}
    coverage = api.client.get('/api/v1/robots/kiwi-poll/sequences', headers=api.admin).json()
    assert coverage['boots'][0]['count'] == 3
    robot = api.client.get('/api/v1/robots/kiwi-poll', headers=api.admin).json()
    assert robot['connected'] is True and robot['transport'] == 'polling'


def test_invalid_frames_get_the_gateways_errors(api: Api) -> None:
    token = api.enrol('kiwi-bad')
    _open(api, 'kiwi-bad', token)
    wrong = event_frame(1, 'kiwi-bad')
    wrong['msg']['severity'] = 'loud'
    body = _ndjson([wrong, {'op': 'publish', 'topic': 'nope', 'boot_id': BOOT, 'seq': 2,
                            'msg': {}}]) + b'not json\n'
    frames = _frames(api.client.post(f'{BASE}/frames', headers=_headers('kiwi-bad', token),
                                     content=body).text)
    assert [f['code'] for f in frames] == ['invalid_message', 'unknown_topic', 'malformed_json']


def test_wrong_tokens_and_operator_tokens_are_refused(api: Api) -> None:
    token = api.enrol('kiwi-auth')
    other = api.enrol('kiwi-other')
    # No credentials, an operator's token, another robot's token: 401, nothing opened.
    assert api.client.post(f'{BASE}/session', content=_auth('kiwi-auth', token)).status_code \
        == 401
    admin = {**api.admin, 'X-Robot-Id': 'kiwi-auth'}
    assert api.client.post(f'{BASE}/session', headers=admin,
                           content=_auth('kiwi-auth', token)).status_code == 401
    assert api.client.post(f'{BASE}/session', headers=_headers('kiwi-auth', other),
                           content=_auth('kiwi-auth', other)).status_code == 401
    assert api.client.post(f'{BASE}/session', headers=_headers('kiwi-other', other),
                           content=_auth('kiwi-auth', token)).status_code == 401
    assert not api.services.gateway.is_connected('kiwi-auth')
    _open(api, 'kiwi-auth', token)
    # An open session changes nothing: each request is authenticated (api/robot_auth.py).
    assert api.client.get(f'{BASE}/frames?wait_s=0', headers=admin).status_code == 401
    assert api.client.get(f'{BASE}/frames?wait_s=0',
                          headers=_headers('kiwi-auth', other)).status_code == 401
    # And a robot token opens no operator route.
    assert api.client.get('/api/v1/robots', headers=_headers('kiwi-auth', token)).status_code \
        == 401
    assert api.client.get(f'{BASE}/frames?wait_s=0',
                          headers=_headers('bad id', token)).status_code == 422


def test_revocation_ends_the_polling_session_at_once(api: Api) -> None:
    token = api.enrol('kiwi-rev')
    _open(api, 'kiwi-rev', token)
    results: list[Any] = []
    poller = threading.Thread(target=lambda: results.append(api.client.get(
        f'{BASE}/frames?wait_s=1.4', headers=_headers('kiwi-rev', token))))
    poller.start()
    time.sleep(0.3)  # the GET waits by now (were it later, it would be a 409, and fail)
    assert api.client.post('/api/v1/robots/kiwi-rev/revoke', headers=api.admin).status_code \
        == 204
    poller.join(10)
    codes = [f.get('code') for f in _frames(results[0].text)]
    assert codes == ['auth_failed'], results[0].text
    assert api.client.get(f'{BASE}/frames?wait_s=0',
                          headers=_headers('kiwi-rev', token)).status_code == 401
    assert api.client.post(f'{BASE}/session', headers=_headers('kiwi-rev', token),
                           content=_auth('kiwi-rev', token)).status_code == 401
    assert not api.services.gateway.is_connected('kiwi-rev')


def test_a_later_transport_replaces_the_earlier(api: Api) -> None:
    token = api.enrol('kiwi-swap')
    ws = robot_connection(api, 'kiwi-swap', token)
    robot = api.client.get('/api/v1/robots/kiwi-swap', headers=api.admin).json()
    assert robot['transport'] == 'websocket'
    _open(api, 'kiwi-swap', token)  # polling replaces the WebSocket...
    replaced = json.loads(ws.recv(timeout=5))
    while 'code' not in replaced:  # a frame sent before (under load it may come first)
        replaced = json.loads(ws.recv(timeout=5))
    assert replaced['code'] == 'replaced'
    try:
        ws.recv(timeout=5)
        raise AssertionError('the replaced WebSocket stayed open')
    except ConnectionClosed:
        pass
    ws = robot_connection(api, 'kiwi-swap', token)  # ...and a WebSocket replaces polling
    assert api.client.get(f'{BASE}/frames?wait_s=0',
                          headers=_headers('kiwi-swap', token)).status_code == 409
    assert api.services.gateway.is_connected('kiwi-swap')
    ws.close()


def test_commands_travel_by_long_poll_and_answer_by_post(api: Api) -> None:
    token = api.enrol('kiwi-cmd')
    _open(api, 'kiwi-cmd', token)
    answer: list[Any] = []
    caller = threading.Thread(target=lambda: answer.append(api.client.post(
        '/api/v1/robots/kiwi-cmd/commands', headers=api.admin,
        json={'command_type': 'ping', 'payload': {}})))
    caller.start()
    # The flag engine's configure of a robot that connects may come before the ping, or not.
    call: dict[str, Any] = {}
    for _ in range(10):
        calls = _frames(api.client.get(f'{BASE}/frames?wait_s=1',
                                       headers=_headers('kiwi-cmd', token)).text)
        pings = [c for c in calls if c.get('args', {}).get('command_type') == 'ping']
        if pings:
            call = pings[0]
            break
    assert call['op'] == 'call_service' and call['args']['command_type'] == 'ping'
    response = {'op': 'service_response', 'service': 'fleet/command', 'id': call['id'],
                'result': True, 'values': {'accepted': True, 'message': 'pong'}}
    assert api.client.post(f'{BASE}/frames', headers=_headers('kiwi-cmd', token),
                           content=_ndjson([response])).status_code == 200
    caller.join(10)
    assert answer[0].status_code == 200, answer[0].text
    assert answer[0].json()['message'] == 'pong'


def test_a_long_poll_held_past_the_presence_timeout_keeps_the_robot_present(api: Api) -> None:
    """A GET may wait longer than the presence timeout (3 s): fewer requests, same presence."""
    token = api.enrol('kiwi-hold')
    _open(api, 'kiwi-hold', token)
    assert api.services.settings.presence_timeout_s == 3.0
    # The server's flag engine configures a robot that connects: answer that first.
    answered = 0
    for _ in range(10):
        for call in _frames(api.client.get(f'{BASE}/frames?wait_s=1',
                                           headers=_headers('kiwi-hold', token)).text):
            reply = {'op': 'service_response', 'service': 'fleet/command', 'id': call['id'],
                     'result': True, 'values': {'accepted': True, 'message': '{}'}}
            api.client.post(f'{BASE}/frames', headers=_headers('kiwi-hold', token),
                            content=_ndjson([reply]))
            answered += 1
        if answered:
            break
    assert answered == 1
    held: list[Any] = []
    started = time.monotonic()
    getter = threading.Thread(target=lambda: held.append(api.client.get(
        f'{BASE}/frames?wait_s=5', headers=_headers('kiwi-hold', token))))
    getter.start()
    time.sleep(4.2)  # past the presence timeout, with nothing but the held GET
    robot = api.client.get('/api/v1/robots/kiwi-hold', headers=api.admin).json()
    assert robot['connected'] is True and robot['status'] != 'offline', robot  # no heartbeat
    getter.join(10)
    assert held[0].status_code == 200 and time.monotonic() - started >= 4.9
    events = api.client.get('/api/v1/robots/kiwi-hold/events', headers=api.admin).json()
    assert 'RobotWentOffline' not in [e['type'] for e in events['events']]


def test_gzip_bodies_are_taken_and_bad_or_bombing_ones_refused(api: Api) -> None:
    """The agent gzips its larger POSTs (issue 20: bytes); the server inflates them, bounded."""
    import gzip

    token = api.enrol('kiwi-gz')
    _open(api, 'kiwi-gz', token)
    headers = {**_headers('kiwi-gz', token), 'Content-Encoding': 'gzip'}
    body = gzip.compress(_ndjson([event_frame(seq, 'kiwi-gz') for seq in (1, 2)]))
    response = api.client.post(f'{BASE}/frames', headers=headers, content=body)
    assert response.status_code == 200 and _acked(_frames(response.text)) == {1, 2}
    bad = api.client.post(f'{BASE}/frames', headers=headers, content=b'not gzip')
    assert bad.status_code == 400 and 'bad gzip body' in bad.text
    bomb = gzip.compress(b'\n' * (4 * 1024 * 1024))  # 4 MiB of newlines in about 4 KB
    assert len(bomb) < 64 * 1024
    refused = api.client.post(f'{BASE}/frames', headers=headers, content=bomb)
    assert refused.status_code == 413, refused.text
    odd = api.client.post(f'{BASE}/frames', headers={**headers, 'Content-Encoding': 'br'},
                          content=b'x')
    assert odd.status_code == 400 and 'only gzip' in odd.text
    coverage = api.client.get('/api/v1/robots/kiwi-gz/sequences', headers=api.admin).json()
    assert coverage['boots'][0]['ranges'] == [[1, 2]]  # nothing else stored


def test_routes_are_documented(api: Api) -> None:
    paths = api.client.get('/openapi.json').json()['paths']
    for path, method in ((f'{BASE}/session', 'post'), (f'{BASE}/frames', 'post'),
                         (f'{BASE}/frames', 'get')):
        assert {'401', '409', '422'} <= set(paths[path][method]['responses']), path
