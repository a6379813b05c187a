"""REST API through httpx (TestClient) on the real app and store."""

from __future__ import annotations

import time

import pytest
from api_harness import Api

from lekiwi_fleet_server.domain.tokens import hash_token
from lekiwi_fleet_server.store.interface import RobotMessage

BOOT = '9f2c4e1a7b3d5f60'


def heartbeat(robot_id: str, seq: int, version: str = '1.0.0') -> RobotMessage:
    msg = {'header': {'stamp': {'sec': int(time.time()), 'nanosec': 0}, 'frame_id': ''},
           'robot_id': robot_id, 'agent_version': '0.1.0', 'software_version': version,
           'boot_id': BOOT, 'sequence': seq, 'state': 1, 'teleop_active': False,
           'teleop_score': 0.0,
           'resources': {'cpu_percent': 5.0, 'load_average_1min': 0.1,
                         'memory_used_bytes': 1, 'memory_total_bytes': 2, 'disk_used_bytes': 1,
                         'disk_total_bytes': 2, 'temperature_c': 40.0,
                         'battery_voltage_v': 12.0, 'battery_percent': 90.0,
                         'network_tx_bytes_per_s': 1.0, 'network_rx_bytes_per_s': 1.0,
                         'uptime_s': 10.0}}
    return RobotMessage(robot_id, BOOT, seq, 'fleet/heartbeat', msg, time.time())


def test_health_ready_metrics_and_openapi(api: Api) -> None:
    assert api.client.get('/healthz').json() == {'status': 'ok'}
    assert api.client.get('/readyz').json() == {'status': 'ready'}
    metrics = api.client.get('/metrics')
    assert metrics.status_code == 200
    for name in ('lekiwi_gateway_connections', 'lekiwi_gateway_messages_received_total',
                 'lekiwi_store_commit_seconds_bucket', 'lekiwi_gateway_queue_depth',
                 'lekiwi_store_batch_messages_bucket'):
        assert name in metrics.text
    paths = api.client.get('/openapi.json').json()['paths']
    for path in ('/api/v1/robots', '/api/v1/robots/{robot_id}', '/api/v1/fleet/summary',
                 '/api/v1/robots/{robot_id}/events', '/api/v1/robots/{robot_id}/telemetry',
                 '/api/v1/robots/{robot_id}/revoke', '/api/v1/robots/{robot_id}/commands'):
        assert path in paths
    assert api.client.get('/docs').status_code == 200


def test_auth_is_required_and_roles_enforced(api: Api) -> None:
    assert api.client.get('/api/v1/robots').status_code == 401
    bad = {'Authorization': 'Bearer lkw_nope'}
    assert api.client.get('/api/v1/robots', headers=bad).status_code == 401
    assert api.client.get('/api/v1/robots', headers=api.viewer).status_code == 200
    denied = api.client.post('/api/v1/robots', headers=api.viewer, json={'robot_id': 'k1'})
    assert denied.status_code == 403
    assert api.client.post('/api/v1/robots/k1/revoke', headers=api.viewer).status_code == 403


def test_enrol_returns_token_once_and_revoke(api: Api) -> None:
    response = api.client.post('/api/v1/robots', headers=api.admin,
                               json={'robot_id': 'kiwi-001', 'tags': ['lab', 'eu']})
    assert response.status_code == 201
    body = response.json()
    assert body['token'].startswith('lkw_')
    assert body['robot']['robot_id'] == 'kiwi-001' and sorted(body['robot']['tags']) == [
        'eu', 'lab']
    credentials = api.services.store.robot_credentials('kiwi-001')
    assert credentials is not None and credentials.token_sha256 == hash_token(body['token'])
    detail = api.client.get('/api/v1/robots/kiwi-001', headers=api.viewer).json()
    assert 'token' not in detail and detail['status'] == 'never_seen'
    assert not detail['connected']
    again = api.client.post('/api/v1/robots', headers=api.admin, json={'robot_id': 'kiwi-001'})
    assert again.status_code == 409
    for bad in ({'robot_id': 'bad id'}, {'robot_id': 'k2', 'tags': ['no spaces']}, {}):
        assert api.client.post('/api/v1/robots', headers=api.admin,
                               json=bad).status_code == 422
    assert api.client.post('/api/v1/robots/kiwi-001/revoke',
                           headers=api.admin).status_code == 204
    assert api.services.store.robot_credentials('kiwi-001').revoked  # type: ignore[union-attr]
    assert api.client.post('/api/v1/robots/ghost/revoke', headers=api.admin).status_code == 404
    assert api.client.get('/api/v1/robots/ghost', headers=api.viewer).status_code == 404


def test_list_filters_summary_and_timeline_paging(api: Api) -> None:
    api.enrol('kiwi-a', ['lab'])
    api.enrol('kiwi-b', ['field'])
    api.enrol('kiwi-c', ['lab'])
    store, now = api.services.store, time.time()
    store.commit_batch([heartbeat('kiwi-a', 1, '1.0.0'), heartbeat('kiwi-b', 1, '2.0.0')],
                       [], now=now)
    get = lambda q: sorted(r['robot_id'] for r in api.client.get(  # noqa: E731
        f'/api/v1/robots{q}', headers=api.viewer).json())
    assert get('') == ['kiwi-a', 'kiwi-b', 'kiwi-c']
    assert get('?tag=lab') == ['kiwi-a', 'kiwi-c']
    assert get('?version=2.0.0') == ['kiwi-b']
    assert get('?status=never_seen') == ['kiwi-c']
    assert get('?teleop=true') == []
    assert get('?teleop=false&tag=field') == ['kiwi-b']
    assert api.client.get('/api/v1/robots?status=zombie',
                          headers=api.viewer).status_code == 422
    summary = api.client.get('/api/v1/fleet/summary', headers=api.viewer).json()
    assert summary['total'] == 3 and summary['by_software_version'].get('2.0.0') == 1
    assert summary['connected'] == 0
    assert set(summary['by_status']) >= {'online', 'offline', 'stale', 'never_seen'}
    # Several events for one robot, read in pages of one.
    for seq, version in ((2, '1.1.0'), (3, '1.2.0')):
        store.commit_batch([heartbeat('kiwi-a', seq, version)], [], now=time.time())
    seen, after = [], 0
    for _ in range(20):
        page = api.client.get(f'/api/v1/robots/kiwi-a/events?after={after}&limit=1',
                              headers=api.viewer).json()
        seen += page['events']
        if page['next_after'] is None:
            break
        after = page['next_after']
    assert len(seen) >= 2
    positions = [e['position'] for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert all(e['stream_id'] == 'robot-kiwi-a' for e in seen)
    bad_page = api.client.get('/api/v1/robots/kiwi-a/events?limit=0', headers=api.viewer)
    assert bad_page.status_code == 422
    assert api.client.get('/api/v1/robots/ghost/events',
                          headers=api.viewer).status_code == 404


def test_telemetry_range_is_downsampled(api: Api) -> None:
    api.enrol('kiwi-t')
    store = api.services.store
    start = float((int(time.time()) - 100) // 30 * 30)  # buckets align to multiples of 30 s
    messages = []
    for i in range(6):
        stamp = start + i * 10
        messages.append(RobotMessage('kiwi-t', BOOT, i + 1, 'fleet/telemetry', {
            'header': {'stamp': {'sec': int(stamp), 'nanosec': 0}, 'frame_id': ''},
            'robot_id': 'kiwi-t', 'boot_id': BOOT, 'sequence': i + 1, 'base_sequence': i,
            'full_snapshot': i == 0, 'field_names': ['cpu_percent'],
            'field_values': [float(i * 10)]}, stamp))
    store.commit_batch(messages, [], now=time.time())
    points = api.client.get(
        f'/api/v1/robots/kiwi-t/telemetry?start={start}&end={start + 60}&bucket_s=30'
        '&fields=cpu_percent', headers=api.viewer)
    assert points.status_code == 200, points.text
    body = points.json()
    assert len(body) == 2
    assert body[0]['values']['cpu_percent'] == pytest.approx(10.0)  # mean of 0, 10, 20
    assert body[1]['values']['cpu_percent'] == pytest.approx(40.0)
    for query in (f'start={start}&end={start}', f'start=0&end={1e9}&bucket_s=1',
                  'end=5', f'start={start}&end={start + 60}&bucket_s=0'):
        assert api.client.get(f'/api/v1/robots/kiwi-t/telemetry?{query}',
                              headers=api.viewer).status_code == 422


def test_rotate_token_and_reenrol_through_the_api(api: Api) -> None:
    old = api.enrol('kiwi-rot')
    robots = '/api/v1/robots'
    assert api.client.post(f'{robots}/kiwi-rot/rotate-token', headers=api.viewer).status_code \
        == 403
    rotated = api.client.post(f'{robots}/kiwi-rot/rotate-token', headers=api.admin)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()['token']
    assert rotated.json()['robot_id'] == 'kiwi-rot' and new.startswith('lkw_') and new != old
    assert api.services.store.robot_credentials('kiwi-rot').token_sha256 == hash_token(new)
    assert api.client.post(f'{robots}/ghost/rotate-token', headers=api.admin).status_code == 404
    # Re-enrolment is for revoked robots only; a revoked one cannot be rotated.
    body = {'robot_id': 'kiwi-rot', 'tags': ['lab'], 'reenrol': True}
    assert api.client.post(robots, headers=api.admin, json=body).status_code == 409
    assert api.client.post(f'{robots}/kiwi-rot/revoke', headers=api.admin).status_code == 204
    assert api.client.post(f'{robots}/kiwi-rot/rotate-token', headers=api.admin).status_code \
        == 409
    plain = api.client.post(robots, headers=api.admin, json={'robot_id': 'kiwi-rot'})
    assert plain.status_code == 409 and 're-enrol' in plain.text
    again = api.client.post(robots, headers=api.admin, json=body)
    assert again.status_code == 201, again.text
    assert not again.json()['robot']['revoked'] and again.json()['robot']['tags'] == ['lab']
    assert api.client.post(robots, headers=api.admin,
                           json={'robot_id': 'ghost', 'reenrol': True}).status_code == 404
    events = api.client.get(f'{robots}/kiwi-rot/events', headers=api.viewer).json()['events']
    by = {e['type']: e['data'].get('by') for e in events}
    assert by['RobotTokenRotated'] and by['RobotReEnrolled'] == by['RobotTokenRotated']
