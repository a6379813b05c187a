"""Accounts, password logins, cookie sessions with CSRF, roles: REST and the stream, refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import ADMIN_TOKEN, Api
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.app import create_app
from lekiwi_fleet_server.settings import Settings

PASSWORD = 'correct horse battery'


def make_api(database_url: str, tmp_path: Path, **overrides: object) -> Iterator[Api]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, gateway_port=0,
                        bootstrap_admin_token=ADMIN_TOKEN, commit_interval_ms=20,
                        command_timeout_s=2, **overrides)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        _viewer, viewer_token = create_operator(services.store, 'watcher', 'viewer',
                                                now=time.time())
        yield Api(client, services, {'Authorization': f'Bearer {ADMIN_TOKEN}'},
                  {'Authorization': f'Bearer {viewer_token}'})


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(database_url, tmp_path, login_free_failures=2,
                        login_base_delay_s=30.0)


def add_account(api: Api, name: str, role: str) -> None:
    response = api.client.post('/api/v1/accounts', headers=api.admin,
                               json={'name': name, 'role': role, 'password': PASSWORD})
    assert response.status_code == 201, response.text


def login(api: Api, name: str, password: str = PASSWORD) -> TestClient:
    """Log in on a client of its own (its own cookie jar); return it."""
    client = TestClient(api.client.app)
    response = client.post('/api/v1/auth/login', json={'name': name, 'password': password})
    assert response.status_code == 200, response.text
    return client


def test_only_admins_manage_accounts(api: Api) -> None:
    body = {'name': 'olga', 'role': 'operator', 'password': PASSWORD}
    assert api.client.post('/api/v1/accounts', json=body).status_code == 401
    assert api.client.post('/api/v1/accounts', headers=api.viewer, json=body).status_code == 403
    add_account(api, 'olga', 'operator')
    assert api.client.post('/api/v1/accounts', headers=api.admin, json=body).status_code == 409
    short = {**body, 'name': 'pat', 'password': 'short'}
    assert api.client.post('/api/v1/accounts', headers=api.admin, json=short).status_code == 422
    bad_role = {**body, 'name': 'pat', 'role': 'root'}
    assert api.client.post('/api/v1/accounts', headers=api.admin,
                           json=bad_role).status_code == 422
    listed = api.client.get('/api/v1/accounts', headers=api.admin).json()
    assert [(a['name'], a['role'], a['disabled']) for a in listed] == [
        ('olga', 'operator', False)]
    assert 'password' not in json.dumps(listed)


def test_login_sets_httponly_samesite_cookies_and_needs_csrf_to_change_things(api: Api) -> None:
    add_account(api, 'ada', 'admin')
    client = TestClient(api.client.app)
    response = client.post('/api/v1/auth/login', json={'name': 'ada', 'password': PASSWORD})
    assert response.status_code == 200
    cookies = response.headers.get_list('set-cookie')
    session = next(c for c in cookies if c.startswith('lekiwi_session='))
    csrf_cookie = next(c for c in cookies if c.startswith('lekiwi_csrf='))
    assert 'HttpOnly' in session and 'SameSite=strict' in session
    assert 'HttpOnly' not in csrf_cookie and 'SameSite=strict' in csrf_cookie
    csrf = response.json()['csrf_token']
    assert client.get('/api/v1/auth/me').json() == {'name': 'ada', 'role': 'admin'}
    assert client.get('/api/v1/robots').status_code == 200
    enrol = {'robot_id': 'kiwi-1', 'tags': []}
    refused = client.post('/api/v1/robots', json=enrol)
    assert refused.status_code == 403 and 'CSRF' in refused.json()['detail']
    assert client.post('/api/v1/robots', json=enrol,
                       headers={'X-CSRF-Token': csrf + 'x'}).status_code == 403
    assert client.post('/api/v1/robots', json=enrol,
                       headers={'X-CSRF-Token': csrf}).status_code == 201
    # A cookie the server did not issue opens nothing.
    forged = TestClient(api.client.app, cookies={'lekiwi_session': 'lkw_forged'})
    assert forged.get('/api/v1/robots').status_code == 401


def test_wrong_password_unknown_name_and_disabled_account_are_refused_alike(api: Api) -> None:
    add_account(api, 'ada', 'viewer')
    for name, password in (('ada', 'wrong password'), ('nobody', PASSWORD)):
        client = TestClient(api.client.app)
        response = client.post('/api/v1/auth/login', json={'name': name, 'password': password})
        assert response.status_code == 401
        assert response.json()['detail'] == 'wrong account name or password'
        assert 'set-cookie' not in response.headers
    client = login(api, 'ada')
    assert api.client.patch('/api/v1/accounts/ada', headers=api.admin,
                            json={'disabled': True}).status_code == 200
    assert client.get('/api/v1/robots').status_code == 401  # its sessions ended at once


def test_roles_viewer_operator_admin_over_rest(api: Api) -> None:
    for name, role in (('vic', 'viewer'), ('olga', 'operator'), ('ada', 'admin')):
        add_account(api, name, role)
    results = {}
    for name in ('vic', 'olga', 'ada'):
        client = login(api, name)
        csrf = {'X-CSRF-Token': client.cookies['lekiwi_csrf']}
        command = client.post('/api/v1/robots/kiwi-x/commands', headers=csrf,
                              json={'command_type': 'ping', 'payload': {}})
        enrol = client.post('/api/v1/robots', headers=csrf,
                            json={'robot_id': f'kiwi-{name}', 'tags': []})
        accounts = client.get('/api/v1/accounts')
        results[name] = (client.get('/api/v1/robots').status_code, command.status_code,
                         enrol.status_code, accounts.status_code)
    # 409: the command passed the role check and found the robot offline.
    assert results == {'vic': (200, 403, 403, 403), 'olga': (200, 409, 403, 403),
                       'ada': (200, 409, 201, 200)}


def test_logout_ends_the_session(api: Api) -> None:
    add_account(api, 'vic', 'viewer')
    client = login(api, 'vic')
    old_cookie = client.cookies['lekiwi_session']
    assert client.post('/api/v1/auth/logout').status_code == 403  # CSRF needed here too
    assert client.post('/api/v1/auth/logout', headers={
        'X-CSRF-Token': client.cookies['lekiwi_csrf']}).status_code == 204
    assert client.get('/api/v1/robots').status_code == 401
    replay = TestClient(api.client.app, cookies={'lekiwi_session': old_cookie})
    assert replay.get('/api/v1/robots').status_code == 401


def test_failed_logins_are_slowed_down_per_account(api: Api) -> None:
    add_account(api, 'vic', 'viewer')
    for _ in range(3):  # login_free_failures=2: the third failure locks
        assert api.client.post('/api/v1/auth/login',
                               json={'name': 'vic', 'password': 'guess1234'}).status_code == 401
    # Locked now, even with the right password: a guesser cannot tell when it hit.
    locked = api.client.post('/api/v1/auth/login', json={'name': 'vic', 'password': PASSWORD})
    assert locked.status_code == 429
    assert 1 <= int(locked.headers['retry-after']) <= 30


def test_sessions_expire(database_url: str, tmp_path: Path) -> None:
    # 3 s: a loaded machine may take over a second between the login and the first request.
    for api in make_api(database_url, tmp_path, session_ttl_s=3.0):
        add_account(api, 'vic', 'viewer')
        client = login(api, 'vic')
        assert client.get('/api/v1/robots').status_code == 200
        time.sleep(3.3)
        assert client.get('/api/v1/robots').status_code == 401


def test_stream_opens_with_the_session_cookie_from_this_origin_only(api: Api) -> None:
    add_account(api, 'vic', 'viewer')
    client = login(api, 'vic')
    with client.websocket_connect('/api/v1/stream',
                                  headers={'origin': 'http://testserver'}) as ws:
        assert ws.receive_json()['type'] == 'snapshot'
    with client.websocket_connect('/api/v1/stream',
                                  headers={'origin': 'http://evil.example'}) as ws:
        assert ws.receive_json() == {'type': 'error', 'code': 'unauthorized'}


def test_robot_token_never_opens_operator_apis(api: Api) -> None:
    token = api.enrol('kiwi-1')
    robot = {'Authorization': f'Bearer {token}'}
    assert api.client.get('/api/v1/robots', headers=robot).status_code == 401
    assert api.client.get('/api/v1/auth/me', headers=robot).status_code == 401
    assert api.client.post('/api/v1/robots/kiwi-1/commands', headers=robot,
                           json={'command_type': 'ping', 'payload': {}}).status_code == 401
    with api.client.websocket_connect('/api/v1/stream', headers=robot) as ws:
        assert ws.receive_json() == {'type': 'error', 'code': 'unauthorized'}


def test_operator_token_never_opens_the_robot_gateway(api: Api) -> None:
    api.enrol('kiwi-1')
    _op, operator_token = create_operator(api.services.store, 'olga', 'operator',
                                          now=time.time())
    for token in (operator_token, ADMIN_TOKEN):
        ws = connect(api.gateway_url, open_timeout=5)
        ws.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-1', 'token': token,
                            'protocol': ['lekiwi-fleet/1']}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                reply = json.loads(ws.recv(timeout=5))
                assert reply.get('msg') != 'authenticated'
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert not api.services.gateway.is_connected('kiwi-1')


def test_operator_actions_record_who_did_it_in_the_events(api: Api) -> None:
    add_account(api, 'ada', 'admin')
    client = login(api, 'ada')
    csrf = {'X-CSRF-Token': client.cookies['lekiwi_csrf']}
    assert client.post('/api/v1/robots', headers=csrf,
                       json={'robot_id': 'kiwi-1', 'tags': []}).status_code == 201
    assert client.post('/api/v1/robots/kiwi-1/revoke', headers=csrf).status_code == 204
    api.enrol('kiwi-2')  # by the bootstrap admin's token
    events = api.client.get('/api/v1/robots/kiwi-1/events', headers=api.viewer).json()['events']
    assert [(e['type'], e['metadata'].get('actor')) for e in events] == [
        ('RobotEnrolled', 'ada'), ('RobotTokenRevoked', 'ada')]
    other = api.client.get('/api/v1/robots/kiwi-2/events', headers=api.viewer).json()['events']
    assert other[0]['metadata']['actor'].startswith('bootstrap-admin-')
