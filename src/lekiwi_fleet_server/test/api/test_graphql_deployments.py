"""GraphQL deployments, releases and the discovery inventory: the same views as REST, the one
role check, refusals, bad arguments, and the robot-changes subscription ignoring deployments'
progress on the bus."""

from __future__ import annotations

import json
import time
from typing import Any

from api_harness import Api, event_frame, robot_connection
from test_api_deployments import push_release

URL = '/api/v1/graphql'


def gql(api: Api, query: str, headers: dict[str, str] | None = None,
        **variables: Any) -> dict[str, Any]:
    response = api.client.post(URL, json={'query': query, 'variables': variables},
                               headers=headers if headers is not None else api.viewer)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def start_deployment(api: Api, version: str, robots: list[str]) -> dict[str, Any]:
    response = api.client.post('/api/v1/deployments', headers=api.admin, json={
        'release_version': version, 'robots': robots, 'waves': [1.0]})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


DEPLOYMENT = '''query($id: String!) { deployment(deploymentId: $id) {
    deploymentId releaseVersion status robotIds createdBy reason plannedWaves
    waves { wave robots succeeded failed running pending skipped }
    robots { robotId wave state waiting attempts rollback } } }'''


def test_releases_and_deployments_read_as_rest_does(api: Api) -> None:
    api.enrol('kiwi-1')  # never connects: its deployment waits for it
    api.enrol('kiwi-2')
    push_release(api, '2')
    releases = gql(api, '{ releases { version files totalBytes createdBy } '
                        'release(version: "2") { version } missing: release(version: "9") '
                        '{ version } }')['data']
    [stored] = releases['releases']
    assert stored['version'] == '2' and stored['files'] == 1 and stored['totalBytes'] > 0
    assert stored['createdBy']
    assert releases['release'] == {'version': '2'} and releases['missing'] is None

    created = start_deployment(api, '2', ['kiwi-1'])
    deployment_id = created['deployment_id']
    deadline = time.monotonic() + 15
    while True:  # until the engine saw that its robot is offline; then nothing changes
        rest = api.client.get(f'/api/v1/deployments/{deployment_id}', headers=api.viewer).json()
        if rest['robots'][0]['waiting'] == 'offline':
            break
        assert time.monotonic() < deadline, rest
        time.sleep(0.05)
    one = gql(api, DEPLOYMENT, id=deployment_id)
    assert 'errors' not in one, one
    d = one['data']['deployment']
    assert d['deploymentId'] == deployment_id and d['releaseVersion'] == '2'
    assert d['status'] == rest['status'] == 'running'
    assert d['robotIds'] == ['kiwi-1'] and d['createdBy'] == rest['created_by']
    assert d['plannedWaves'] == rest['planned_waves'] == [1]
    assert [r['robotId'] for r in d['robots']] == ['kiwi-1']
    assert d['robots'][0]['state'] == rest['robots'][0]['state']
    assert d['robots'][0]['waiting'] == rest['robots'][0]['waiting'] == 'offline'
    assert len(d['waves']) == len(rest['waves'])

    paused = api.client.post(f'/api/v1/deployments/{deployment_id}/pause', headers=api.admin)
    assert paused.status_code == 200, paused.text
    d = gql(api, DEPLOYMENT, id=deployment_id)['data']['deployment']
    assert d['status'] == 'paused' and 'paused by' in d['reason']

    listed = gql(api, '''{ all: deployments { deploymentId status robotIds }
        mine: deployments(robotId: "kiwi-1") { deploymentId }
        other: deployments(robotId: "kiwi-2") { deploymentId }
        paused: deployments(status: "paused") { deploymentId }
        running: deployments(status: "running") { deploymentId }
        missing: deployment(deploymentId: "dep-nope") { deploymentId } }''')['data']
    assert listed['all'] == [{'deploymentId': deployment_id, 'status': 'paused',
                              'robotIds': ['kiwi-1']}]
    assert listed['mine'] == listed['paused'] == [{'deploymentId': deployment_id}]
    assert listed['other'] == listed['running'] == [] and listed['missing'] is None


def test_deployments_releases_and_inventory_refuse_the_unauthenticated(api: Api) -> None:
    token = api.enrol('kiwi-1')
    for query in ('{ deployments { deploymentId } }', '{ releases { version } }',
                  '{ inventory { key } }', '{ deployment(deploymentId: "x") { status } }',
                  '{ inventoryEntry(key: "kiwi-1") { key } }'):
        for headers in ({}, {'Authorization': f'Bearer {token}'}):
            result = gql(api, query, headers)
            # A refused nullable field reads null; a list one nulls the whole data.
            assert not any((result['data'] or {}).values()), (query, result)
            assert 'unauthorized' in result['errors'][0]['message']
        assert 'errors' not in gql(api, query), query  # a viewer reads


def test_inventory_lists_a_connected_robot_with_its_source_and_presence(api: Api) -> None:
    token = api.enrol('kiwi-1')
    robot = robot_connection(api, 'kiwi-1', token)
    try:
        query = '''{ inventory(source: "uplink", enrolled: true) { key robotId status enrolled
            address sources { source address } presence { state reason } }
            entry: inventoryEntry(key: "kiwi-1") { robotId }
            none: inventory(source: "mdns") { key } }'''
        deadline = time.monotonic() + 15
        while True:
            data = gql(api, query)['data']
            if data['inventory'] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        rest = api.client.get('/api/v1/inventory', headers=api.viewer).json()
        assert [e['key'] for e in rest] == ['kiwi-1']
        [entry] = data['inventory']
        assert entry['robotId'] == 'kiwi-1' and entry['status'] == 'enrolled'
        assert entry['address'] == rest[0]['address'] == '127.0.0.1'
        assert entry['sources'] == [{'source': 'uplink', 'address': '127.0.0.1'}]
        assert entry['presence']['state'] == rest[0]['presence']['state'] == 'online'
        assert data['entry'] == {'robotId': 'kiwi-1'} and data['none'] == []
    finally:
        robot.close()
    bad = gql(api, '{ inventory(source: "carrier-pigeon") { key } }')
    assert 'source must be one of' in bad['errors'][0]['message']
    bad = gql(api, '{ inventory(presence: "asleep") { key } }')
    assert 'presence must be one of' in bad['errors'][0]['message']
    assert gql(api, '{ inventoryEntry(key: "nope") { key } }')['data'] == {
        'inventoryEntry': None}


def test_the_cost_of_deployment_robots_counts_their_size(api: Api) -> None:
    costly = gql(api, '{ deployments(first: 1000) { robots(first: 1000) { robotId state '
                      'waiting attempts message } } }')
    assert costly['data'] is None and 'query cost' in costly['errors'][0]['message']


def test_robot_changes_go_on_past_a_deployment_update(api: Api) -> None:
    token = api.enrol('kiwi-1')
    api.enrol('kiwi-2')
    push_release(api, '2')
    with api.client.websocket_connect(URL, subprotocols=['graphql-transport-ws'],
                                      headers=api.viewer) as ws:
        ws.send_json({'type': 'connection_init'})
        assert ws.receive_json()['type'] == 'connection_ack'
        ws.send_json({'id': '1', 'type': 'subscribe', 'payload': {'query': '''subscription {
            robotChanges(robotIds: ["kiwi-1"]) { kind robots } }'''}})
        assert ws.receive_json()['payload']['data']['robotChanges']['kind'] == 'snapshot'
        start_deployment(api, '2', ['kiwi-2'])  # its progress goes over the same bus
        robot = robot_connection(api, 'kiwi-1', token)
        try:
            robot.send(json.dumps(event_frame(1, 'kiwi-1')))
            reply = ws.receive_json()
            assert reply['type'] == 'next', reply
            update = reply['payload']['data']['robotChanges']
            assert update['kind'] == 'update'
            assert {r['robot_id'] for r in update['robots']} == {'kiwi-1'}
        finally:
            robot.close()
        ws.send_json({'id': '1', 'type': 'complete'})
