"""Each command sent from the API is an event on the robot's stream, with its actor.

Through the real app and gateway (SQLite and PostgreSQL): the robot answers, stays silent or
is not connected; each attempt shows in the robot's events (REST, GraphQL) with the operator
in its metadata, and in the fleet timeline. An invalid command is not sent and not recorded.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from api_harness import Api, robot_connection


def _answer(ws: Any, reply: dict[str, Any] | None) -> None:
    while True:
        frame = json.loads(ws.recv(timeout=5))
        if frame.get('op') == 'call_service':
            if reply is not None:
                ws.send(json.dumps({'op': 'service_response', 'service': 'fleet/command',
                                    'id': frame['id'], **reply}))
            return


def _command(api: Api, ws: Any, reply: dict[str, Any] | None, command: str) -> int:
    responder = threading.Thread(target=_answer, args=(ws, reply))
    responder.start()
    response = api.client.post('/api/v1/robots/kiwi-log/commands', headers=api.admin,
                               json={'command_type': command})
    responder.join(5)
    return response.status_code


def _commands(api: Api) -> list[dict[str, Any]]:
    events = api.client.get('/api/v1/robots/kiwi-log/events', headers=api.viewer,
                            params={'limit': 100}).json()['events']
    return [e for e in events if e['type'] == 'RobotCommandSent']


def test_each_command_sent_is_recorded_with_its_actor_and_outcome(api: Api) -> None:
    token = api.enrol('kiwi-log')
    assert api.client.post('/api/v1/robots/kiwi-log/commands', headers=api.admin,
                           json={'command_type': 'ping'}).status_code == 409  # not connected
    ws = robot_connection(api, 'kiwi-log', token)
    accepted = {'result': True, 'values': {'accepted': True, 'message': 'pong'}}
    refused = {'result': False, 'values': {'accepted': False, 'message': 'busy'}}
    assert _command(api, ws, accepted, 'ping') == 200
    assert _command(api, ws, refused, 'request_snapshot') == 200
    assert _command(api, ws, None, 'ping') == 504  # no answer within command_timeout_s
    assert api.client.post('/api/v1/robots/kiwi-log/commands', headers=api.admin,
                           json={'command_type': 'reboot'}).status_code == 422  # never sent
    assert api.client.post('/api/v1/robots/kiwi-log/commands', headers=api.viewer,
                           json={'command_type': 'ping'}).status_code == 403  # not an action
    ws.close()
    recorded = _commands(api)
    assert [(e['data']['command_type'], e['data']['outcome']) for e in recorded] == [
        ('ping', 'not_connected'), ('ping', 'accepted'), ('request_snapshot', 'refused'),
        ('ping', 'timeout')]
    actors = {e['metadata']['actor'] for e in recorded}
    assert len(actors) == 1 and actors.pop().startswith('bootstrap-admin-')
    assert recorded[1]['data']['message'] == 'pong' and recorded[1]['data']['command_id']
    assert all(e['metadata']['causation'] == 'api:command' for e in recorded)
    timeline = api.client.get('/api/v1/timeline', headers=api.viewer,
                              params={'robot_id': 'kiwi-log', 'limit': 100}).json()['entries']
    summaries = [e['summary'] for e in timeline if e['type'] == 'RobotCommandSent']
    assert 'command ping accepted: pong' in summaries
    assert 'command request_snapshot refused: busy' in summaries
    gql = api.client.post('/api/v1/graphql', headers=api.viewer, json={'query': (
        '{ events(robotId: "kiwi-log") { events { type metadata data } } }')})
    assert gql.status_code == 200, gql.text
    found = [e for e in gql.json()['data']['events']['events'] if e['type'] == 'RobotCommandSent']
    assert len(found) == 4 and all(e['metadata']['actor'] for e in found)
