"""Key-bound robots' HTTP requests: a token alone is refused, the key's proof lets them in."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from api_harness import Api, release_tar
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lekiwi_fleet_server.domain.admission import key_fingerprint
from lekiwi_fleet_server.domain.key_binding import key_tag
from lekiwi_fleet_server.domain.request_proof import HEADER, signed_request

POLL = '/api/v1/robot/uplink'


class RobotKey:
    """A robot's Ed25519 key pair, signing request proofs as the agent does."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public = base64.b64encode(raw).decode()
        self.fingerprint = key_fingerprint(raw)

    def proof(self, robot_id: str, nonce: str, method: str, path: str) -> str:
        signature = base64.b64encode(
            self._key.sign(signed_request(robot_id, nonce, method, path))).decode()
        return f'{self.public} {nonce} {signature}'


@pytest.fixture
def bound(api: Api) -> tuple[str, RobotKey]:
    """Enrol `kiwi-key` bound to a fresh key (as an accepted admission does); give its token."""
    key = RobotKey()
    return api.enrol('kiwi-key', [key_tag(key.fingerprint)]), key


def _robot(robot_id: str, token: str) -> dict[str, str]:
    return {'Authorization': f'Bearer {token}', 'X-Robot-Id': robot_id}


def _nonce(api: Api, robot_id: str, token: str) -> str:
    answer = api.client.get('/api/v1/robot/key-challenge', headers=_robot(robot_id, token))
    assert answer.status_code == 200, answer.text
    assert answer.json()['header'] == HEADER
    return str(answer.json()['nonce'])


def _release(api: Api) -> str:
    created = api.client.post('/api/v1/releases?version=1.0', headers=api.admin,
                              content=release_tar({'run.sh': b'echo hi\n' * 100}))
    assert created.status_code == 201, created.text
    return str(created.json()['manifest_sha256'])


def test_release_downloads_need_the_key_proof_of_a_key_bound_robot(
        api: Api, bound: tuple[str, RobotKey]) -> None:
    token, key = bound
    digest = _release(api)
    path = '/api/v1/releases/1.0/manifest'
    headers = _robot('kiwi-key', token)
    refused = api.client.get(path, headers=headers)
    assert refused.status_code == 401 and HEADER in refused.json()['detail']
    nonce = _nonce(api, 'kiwi-key', token)
    manifest = api.client.get(path, headers=headers | {
        HEADER: key.proof('kiwi-key', nonce, 'GET', path)})
    assert manifest.status_code == 200, manifest.text
    assert hashlib.sha256(manifest.content).hexdigest() == digest
    blob = json.loads(manifest.content)['entries'][0]['sha256']
    blob_path = f'/api/v1/blobs/{blob}'
    assert api.client.get(blob_path, headers=headers).status_code == 401
    # The manifest's proof is for the manifest only; another key's proof opens nothing.
    assert api.client.get(blob_path, headers=headers | {
        HEADER: key.proof('kiwi-key', nonce, 'GET', path)}).status_code == 401
    assert api.client.get(blob_path, headers=headers | {
        HEADER: RobotKey().proof('kiwi-key', nonce, 'GET', blob_path)}).status_code == 401
    got = api.client.get(blob_path, headers=headers | {
        HEADER: key.proof('kiwi-key', nonce, 'GET', blob_path), 'Range': 'bytes=8-'})
    assert got.status_code == 206 and got.content == (b'echo hi\n' * 100)[8:]


def test_revocation_refuses_a_proved_robot_at_its_next_request(
        api: Api, bound: tuple[str, RobotKey]) -> None:
    token, key = bound
    _release(api)
    path = '/api/v1/releases/1.0/manifest'
    proved = _robot('kiwi-key', token) | {
        HEADER: key.proof('kiwi-key', _nonce(api, 'kiwi-key', token), 'GET', path)}
    assert api.client.get(path, headers=proved).status_code == 200
    assert api.client.post('/api/v1/robots/kiwi-key/revoke', headers=api.admin).status_code \
        == 204
    assert api.client.get(path, headers=proved).status_code == 401
    assert api.client.get('/api/v1/robot/key-challenge',
                          headers=_robot('kiwi-key', token)).status_code == 401


def test_the_challenge_needs_a_robot_token_and_a_token_only_robot_needs_no_proof(
        api: Api) -> None:
    token = api.enrol('kiwi-plain')
    _release(api)
    assert api.client.get('/api/v1/robot/key-challenge').status_code == 401
    assert api.client.get('/api/v1/robot/key-challenge',
                          headers=api.admin | {'X-Robot-Id': 'kiwi-plain'}).status_code == 401
    answer = api.client.get('/api/v1/robot/key-challenge', headers=_robot('kiwi-plain', token))
    assert answer.status_code == 200 and answer.json()['key_bound'] is False
    assert api.client.get('/api/v1/releases/1.0/manifest',
                          headers=_robot('kiwi-plain', token)).status_code == 200
    # An operator's token is no robot's: refused on robot routes, even with the robot's id.
    assert api.client.get('/api/v1/releases/1.0/manifest',
                          headers=api.admin | {'X-Robot-Id': 'kiwi-plain'}).status_code == 401


def _auth_frame(robot_id: str, token: str) -> bytes:
    frame: dict[str, Any] = {'op': 'auth', 'robot_id': robot_id, 'token': token,
                             'protocol': ['lekiwi-fleet/1'], 'agent_version': '0.1.0'}
    return json.dumps(frame).encode()


def test_polling_refuses_a_key_bound_robots_token_without_the_proof(
        api: Api, bound: tuple[str, RobotKey]) -> None:
    token, key = bound
    headers = _robot('kiwi-key', token) | {'Content-Type': 'application/x-ndjson'}
    for method, path, body in (('POST', f'{POLL}/session', _auth_frame('kiwi-key', token)),
                               ('POST', f'{POLL}/frames', b''), ('GET', f'{POLL}/frames', None)):
        refused = api.client.request(method, path, headers=headers, content=body)
        assert refused.status_code == 401, (path, refused.text)
        assert HEADER in refused.json()['detail']
    assert not api.services.gateway.is_connected('kiwi-key')
    # With the proof the request passes the HTTP check and reaches the gateway, whose own
    # login rule (the key proof of the auth frame) then decides; nothing was opened here.
    nonce = _nonce(api, 'kiwi-key', token)
    polled = api.client.get(f'{POLL}/frames', params={'wait_s': 0}, headers=headers | {
        HEADER: key.proof('kiwi-key', nonce, 'GET', f'{POLL}/frames')})
    assert polled.status_code == 409  # past auth: no polling session of this robot yet


def test_a_key_bound_robot_polls_with_the_proof_on_each_request(
        api: Api, bound: tuple[str, RobotKey]) -> None:
    """The HTTP proof stands for the login's key challenge; every request needs its own."""
    token, key = bound
    headers = _robot('kiwi-key', token) | {'Content-Type': 'application/x-ndjson'}
    nonce = _nonce(api, 'kiwi-key', token)

    def proved(method: str, path: str) -> dict[str, str]:
        return headers | {HEADER: key.proof('kiwi-key', nonce, method, path)}

    opened = api.client.post(f'{POLL}/session', headers=proved('POST', f'{POLL}/session'),
                             content=_auth_frame('kiwi-key', token))
    assert opened.status_code == 200, opened.text
    assert json.loads(opened.text.splitlines()[0])['msg'] == 'authenticated'
    assert api.services.gateway.is_connected('kiwi-key')
    polled = api.client.get(f'{POLL}/frames', params={'wait_s': 0},
                            headers=proved('GET', f'{POLL}/frames'))
    assert polled.status_code == 200, polled.text
    # The session's proof does not carry over: a request without its own is refused.
    assert api.client.get(f'{POLL}/frames', params={'wait_s': 0},
                          headers=headers).status_code == 401
    # Nor does a proof made for another route.
    assert api.client.post(f'{POLL}/frames', headers=proved('GET', f'{POLL}/frames'),
                           content=b'').status_code == 401
