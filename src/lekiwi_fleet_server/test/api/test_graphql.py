"""GraphQL over the same read models as REST: roles and refusals, filters, cursor pages, nested
lists, depth and cost limits, the robot-changes subscription, and the exported schema."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_harness import ADMIN_TOKEN, Api, event_frame, robot_connection
from fastapi.testclient import TestClient

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.graphql.export import schema_sdl
from lekiwi_fleet_server.settings import Settings

SCHEMA_FILE = Path(__file__).resolve().parents[4] / 'docs' / 'graphql-schema.graphql'
URL = '/api/v1/graphql'


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        graphql_max_depth=4, graphql_max_cost=20_000)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _viewer, viewer_token = create_operator(services.store, 'watcher', 'viewer',
                                                now=time.time())
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})


def gql(api: Api, query: str, headers: dict[str, str] | None = None,
        **variables: Any) -> dict[str, Any]:
    response = api.client.post(URL, json={'query': query, 'variables': variables},
                               headers=headers if headers is not None else api.viewer)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_exported_schema_matches_the_code() -> None:
    assert SCHEMA_FILE.read_text() == schema_sdl(), (
        'docs/graphql-schema.graphql drifted: run python -m lekiwi_fleet_server.graphql.export')


def test_only_operators_read_and_a_robot_token_is_refused(api: Api) -> None:
    token = api.enrol('kiwi-1')
    for headers in ({}, {'Authorization': f'Bearer {token}'},
                    {'Authorization': 'Bearer lkw_unknown'}):
        result = gql(api, '{ robots { totalCount } }', headers)
        assert result['data'] is None
        assert 'unauthorized' in result['errors'][0]['message']
    assert gql(api, '{ me { name role } }')['data']['me'] == {'name': 'watcher',
                                                              'role': 'viewer'}
    assert gql(api, '{ robots { totalCount } }', api.admin)['data']['robots'] == {
        'totalCount': 1}


def test_robots_filter_and_page_with_cursors(api: Api) -> None:
    for i in range(5):
        api.enrol(f'kiwi-{i}', ['lab-a'] if i % 2 == 0 else ['lab-b'])
    query = '''query($after: String) { robots(first: 2, after: $after,
                 filter: {tag: "lab-a"}) {
        totalCount edges { cursor node { robotId tags status } }
        pageInfo { hasNextPage endCursor } } }'''
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = gql(api, query, after=after)['data']['robots']
        assert page['totalCount'] == 3
        seen += [e['node']['robotId'] for e in page['edges']]
        if not page['pageInfo']['hasNextPage']:
            break
        after = page['pageInfo']['endCursor']
    assert seen == ['kiwi-0', 'kiwi-2', 'kiwi-4']
    search = gql(api, '{ robots(filter: {search: "I-3"}) { edges { node { robotId } } } }')
    assert [e['node']['robotId'] for e in search['data']['robots']['edges']] == ['kiwi-3']
    bad = gql(api, '{ robots(after: "%%%") { totalCount } }')
    assert 'invalid cursor' in bad['errors'][0]['message']
    bad = gql(api, '{ robots(filter: {status: "flying"}) { totalCount } }')
    assert 'status must be one of' in bad['errors'][0]['message']


def test_robot_with_its_events_and_teleop_sessions(api: Api) -> None:
    api.enrol('kiwi-1', ['lab'])
    result = gql(api, '''{ robot(robotId: "kiwi-1") { robotId tags
        events(first: 10) { events { type metadata } nextAfter }
        teleopSessions { sessionId } }
        missing: robot(robotId: "nope") { robotId }
        events(robotId: "kiwi-1") { events { type } }
        fleetSummary { total byStatus } }''')
    assert 'errors' not in result, result
    data = result['data']
    assert data['robot']['events']['events'][0]['type'] == 'RobotEnrolled'
    assert data['robot']['teleopSessions'] == [] and data['missing'] is None
    assert data['events']['events'][0]['type'] == 'RobotEnrolled'
    assert data['fleetSummary']['total'] == 1
    assert data['fleetSummary']['byStatus']['never_seen'] == 1


def test_depth_and_cost_are_limited(api: Api) -> None:
    deep = gql(api, '{ robots { edges { node { events { events { metadata } } } } } }')
    assert deep['data'] is None
    assert 'exceeds maximum operation depth' in deep['errors'][0]['message']
    costly = gql(api, '{ robots(first: 1000) { edges { node { teleopSessions(first: 1000) '
                      '{ sessionId } } } } }')
    assert costly['data'] is None and 'query cost' in costly['errors'][0]['message']
    assert 'errors' not in gql(api, '{ robots(first: 10) { edges { node { '
                                    'teleopSessions(first: 10) { sessionId } } } } }')
    too_many = gql(api, '{ robots(first: 5000) { totalCount } }')
    assert 'first/limit must be between 1 and 1000' in too_many['errors'][0]['message']


def test_cookie_sessions_need_the_csrf_token_on_post(api: Api) -> None:
    api.client.post('/api/v1/accounts', headers=api.admin,
                    json={'name': 'vic', 'role': 'viewer', 'password': 'a long password'})
    client = TestClient(api.client.app)
    assert client.post('/api/v1/auth/login', json={'name': 'vic', 'password':
                                                    'a long password'}).status_code == 200
    body = {'query': '{ me { name } }'}
    assert client.post(URL, json=body).status_code == 403
    ok = client.post(URL, json=body, headers={'X-CSRF-Token': client.cookies['lekiwi_csrf']})
    assert ok.json()['data']['me'] == {'name': 'vic'}


def test_robot_changes_subscription_gets_a_snapshot_then_live_updates(api: Api) -> None:
    token = api.enrol('kiwi-1')
    api.enrol('kiwi-2')
    with api.client.websocket_connect(URL, subprotocols=['graphql-transport-ws'],
                                      headers=api.viewer) as ws:
        ws.send_json({'type': 'connection_init'})
        assert ws.receive_json()['type'] == 'connection_ack'
        ws.send_json({'id': '1', 'type': 'subscribe', 'payload': {'query': '''subscription {
            robotChanges(robotIds: ["kiwi-1"]) { kind robots events { type } } }'''}})
        first = ws.receive_json()
        assert first['type'] == 'next', first
        snapshot = first['payload']['data']['robotChanges']
        assert snapshot['kind'] == 'snapshot'
        assert [r['robot_id'] for r in snapshot['robots']] == ['kiwi-1']
        robot = robot_connection(api, 'kiwi-1', token)
        try:
            robot.send(json.dumps(event_frame(1, 'kiwi-1')))
            update = ws.receive_json()['payload']['data']['robotChanges']
            assert update['kind'] == 'update'
            assert {r['robot_id'] for r in update['robots']} == {'kiwi-1'}
        finally:
            robot.close()
        ws.send_json({'id': '1', 'type': 'complete'})


def test_subscriptions_refuse_the_unauthenticated(api: Api) -> None:
    with api.client.websocket_connect(URL, subprotocols=['graphql-transport-ws']) as ws:
        ws.send_json({'type': 'connection_init'})
        assert ws.receive_json()['type'] == 'connection_ack'
        ws.send_json({'id': '1', 'type': 'subscribe', 'payload': {
            'query': 'subscription { robotChanges { kind } }'}})
        reply = ws.receive_json()
        assert reply['type'] == 'error' or 'errors' in reply.get('payload', {}), reply
        assert 'unauthorized' in json.dumps(reply)
