"""Admission of robots without a token, end to end on the real app (SQLite and PostgreSQL).

A robot asks admission over the gateway with a key it made; the inventory lists it pending;
an admin decides over REST; the token reaches that very connection, which is then
authenticated; refusals close the connection and keep nothing.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from discovery_app import ADMIN, ADMIN_TOKEN, discovery_settings, enrol, inventory, wait_for
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from lekiwi_fleet_server.cli import main as cli_main
from lekiwi_fleet_server.domain.admission import key_fingerprint, signed_message
from lekiwi_fleet_server.domain.key_binding import signed_message as key_signed_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'api'))
from live_server import live_server  # noqa: E402 (the API tests' live uvicorn server)

PROTOCOL = ['lekiwi-fleet/1']


class Asker:
    """A robot without a token on a real WebSocket, with an Ed25519 key of its own."""

    def __init__(self, port: int, robot_id: str) -> None:
        self.robot_id = robot_id
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()
        self.fingerprint = key_fingerprint(raw)
        self.ws: ClientConnection = connect(f'ws://127.0.0.1:{port}/', open_timeout=5, legacy=True)

    def send_auth(self, **admission: Any) -> None:
        self.ws.send(json.dumps({'op': 'auth', 'robot_id': self.robot_id, 'protocol': PROTOCOL,
                                 'admission': {'public_key': self.public_key, **admission}}))

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))  # type: ignore[no-any-return]

    def challenge(self) -> str:
        self.send_auth()
        reply = self.recv()
        assert reply['msg'] == 'admission_challenge' and reply['id'] == 'admission', reply
        return str(reply['nonce'])

    def sign(self, nonce: str, robot_id: str | None = None) -> str:
        message = signed_message(robot_id or self.robot_id, nonce)
        return base64.b64encode(self.key.sign(message)).decode()

    def request(self) -> dict[str, Any]:
        self.send_auth(signature=self.sign(self.challenge()))
        return self.recv()

    def refusal(self) -> tuple[dict[str, Any], int | None]:
        reply = self.recv()
        with pytest.raises(ConnectionClosed) as closed:
            self.recv()
        return reply, closed.value.rcvd.code if closed.value.rcvd else None


@pytest.fixture
def client(make_client: Callable[..., TestClient], database_url: str) -> TestClient:
    return make_client(database_url=database_url)


def _port(client: TestClient) -> int:
    return int(client.app.state.services.gateway.port)  # type: ignore[attr-defined]


def test_an_accepted_robot_gets_its_token_on_the_same_connection(client: TestClient) -> None:
    asker = Asker(_port(client), 'kiwi-new')
    pending = asker.request()
    assert pending['msg'] == 'admission_pending' and pending['fingerprint'] == asker.fingerprint
    assert 'token' not in pending  # no token travels unasked
    entry = wait_for(lambda: inventory(client).get('kiwi-new'))
    assert entry['status'] == 'pending' and not entry['enrolled']
    assert entry['sources']['uplink']['admission_fingerprint'] == asker.fingerprint
    assert set(inventory(client, enrolled=False)) == {'kiwi-new'}
    listed = client.get('/api/v1/inventory/admissions', headers=ADMIN).json()
    assert [(a['robot_id'], a['fingerprint']) for a in listed] == [('kiwi-new', asker.fingerprint)]
    assert client.post('/api/v1/inventory/admissions/kiwi-new/accept',
                       json={}).status_code == 401  # only admins decide
    wrong_key = client.post('/api/v1/inventory/admissions/kiwi-new/accept', headers=ADMIN,
                            json={'fingerprint': 'SHA256:not-the-one'})
    assert wrong_key.status_code == 409
    accepted = client.post('/api/v1/inventory/admissions/kiwi-new/accept', headers=ADMIN,
                           json={'fingerprint': asker.fingerprint, 'tags': ['lab']})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body['status'] == 'accepted' and 'token' not in body  # only the robot gets it
    assert set(body['tags']) == {'lab', f'key:{asker.fingerprint}'}
    admitted = asker.recv()
    assert admitted['msg'] == 'admission_accepted' and admitted['token'].startswith('lkw_')
    authenticated = asker.recv()
    assert authenticated['msg'] == 'authenticated' and authenticated['robot_id'] == 'kiwi-new'
    gateway = client.app.state.services.gateway  # type: ignore[attr-defined]
    assert gateway.is_connected('kiwi-new')
    wait_for(lambda: inventory(client).get('kiwi-new', {}).get('status') == 'enrolled')
    events = client.get('/api/v1/robots/kiwi-new/events', headers=ADMIN).json()['events']
    assert events[0]['type'] == 'RobotEnrolled'
    assert events[0]['metadata']['actor'].startswith('bootstrap-admin-')
    asker.ws.close()
    # The token it received is a real one, bound to the key: a new connection authenticates
    # with the token and the key's proof of a fresh nonce (domain/key_binding.py).
    again = connect(f'ws://127.0.0.1:{_port(client)}/', open_timeout=5, legacy=True)
    again.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-new', 'token': admitted['token'],
                           'protocol': PROTOCOL, 'key_proof': {'public_key': asker.public_key}}))
    challenge = json.loads(again.recv(timeout=10))
    assert challenge['msg'] == 'key_challenge' and challenge['id'] == 'key_proof', challenge
    proof = {'public_key': asker.public_key,
             'signature': base64.b64encode(asker.key.sign(
                 key_signed_message('kiwi-new', challenge['nonce']))).decode()}
    again.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-new', 'token': admitted['token'],
                           'protocol': PROTOCOL, 'key_proof': proof}))
    assert json.loads(again.recv(timeout=10))['msg'] == 'authenticated'
    again.close()
    assert client.get('/api/v1/inventory/admissions', headers=ADMIN).json() == []


def _token_auth(port: int, robot_id: str, token: str, **extra: Any) -> ClientConnection:
    ws = connect(f'ws://127.0.0.1:{port}/', open_timeout=5, legacy=True)
    ws.send(json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                        'protocol': PROTOCOL, **extra}))
    return ws


def _refused(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    reply = json.loads(ws.recv(timeout=10))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return reply, closed.value.rcvd.code if closed.value.rcvd else None


def test_an_admitted_robots_token_without_its_key_is_refused(client: TestClient) -> None:
    port = _port(client)
    asker = Asker(port, 'kiwi-bound')
    assert asker.request()['msg'] == 'admission_pending'
    wait_for(lambda: client.get('/api/v1/inventory/admissions', headers=ADMIN).json())
    assert client.post('/api/v1/inventory/admissions/kiwi-bound/accept', headers=ADMIN,
                       json={}).status_code == 200
    token = asker.recv()['token']
    assert asker.recv()['msg'] == 'authenticated'
    asker.ws.close()
    # The token alone (copied off the robot): refused at once, the message names the binding.
    reply, code = _refused(_token_auth(port, 'kiwi-bound', token))
    assert reply['code'] == 'auth_failed' and code == 4401
    assert f'bound to key {asker.fingerprint}' in reply['msg'] and 'key_proof' in reply['msg']
    # The token with another key: refused before any challenge.
    other = Asker(port, 'kiwi-other')
    other.ws.close()
    reply, code = _refused(_token_auth(port, 'kiwi-bound', token,
                                       key_proof={'public_key': other.public_key}))
    assert reply['code'] == 'auth_failed' and 'is not the key' in reply['msg'] and code == 4401
    # The right key, but a signature of another nonce (a replayed one): refused.
    ws = _token_auth(port, 'kiwi-bound', token, key_proof={'public_key': asker.public_key})
    nonce = json.loads(ws.recv(timeout=10))['nonce']
    stale = base64.b64encode(asker.key.sign(key_signed_message('kiwi-bound', 'x' + nonce)))
    ws.send(json.dumps({'op': 'auth', 'robot_id': 'kiwi-bound', 'token': token,
                        'protocol': PROTOCOL, 'key_proof': {'public_key': asker.public_key,
                                                            'signature': stale.decode()}}))
    reply, code = _refused(ws)
    assert reply['code'] == 'auth_failed' and 'signature' in reply['msg'] and code == 4401
    # A wrong token with the right key learns nothing about keys: the usual refusal.
    reply, _ = _refused(_token_auth(port, 'kiwi-bound', 'lkw_wrong',
                                    key_proof={'public_key': asker.public_key}))
    assert reply['code'] == 'auth_failed' and reply['msg'] == 'unknown robot or wrong token'


def test_a_robot_enrolled_by_token_only_needs_no_key(client: TestClient) -> None:
    token = enrol(client, 'kiwi-plain')
    ws = _token_auth(_port(client), 'kiwi-plain', token)
    assert json.loads(ws.recv(timeout=10))['msg'] == 'authenticated'
    ws.close()
    # An agent that has a key anyway (it once asked admission elsewhere) is not challenged.
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ws = _token_auth(_port(client), 'kiwi-plain', token,
                     key_proof={'public_key': base64.b64encode(key).decode()})
    assert json.loads(ws.recv(timeout=10))['msg'] == 'authenticated'
    ws.close()


def test_a_rejected_robot_is_refused_closed_and_nothing_is_kept(client: TestClient) -> None:
    asker = Asker(_port(client), 'kiwi-rej')
    assert asker.request()['msg'] == 'admission_pending'
    wait_for(lambda: 'kiwi-rej' in inventory(client))
    rejected = client.post('/api/v1/inventory/admissions/kiwi-rej/reject', headers=ADMIN,
                           json={})
    assert rejected.status_code == 200 and rejected.json()['status'] == 'rejected'
    reply, code = asker.refusal()
    assert reply['code'] == 'admission_refused' and 'rejected' in reply['msg'] and code == 4403
    wait_for(lambda: 'kiwi-rej' not in inventory(client))
    assert client.get('/api/v1/robots/kiwi-rej', headers=ADMIN).status_code == 404
    assert client.get('/api/v1/inventory/admissions', headers=ADMIN).json() == []
    assert client.post('/api/v1/inventory/admissions/kiwi-rej/accept', headers=ADMIN,
                       json={}).status_code == 404


def test_a_forged_signature_an_enrolled_id_and_a_closed_request_are_refused(
        client: TestClient) -> None:
    port = _port(client)
    forger = Asker(port, 'kiwi-forged')
    nonce = forger.challenge()
    other = Ed25519PrivateKey.generate()  # signs with a key that is not the one it names
    forged = base64.b64encode(other.sign(signed_message('kiwi-forged', nonce))).decode()
    forger.send_auth(signature=forged)
    reply, code = forger.refusal()
    assert reply['code'] == 'auth_failed' and 'signature' in reply['msg'] and code == 4401
    replay = Asker(port, 'kiwi-forged')  # a signature of another connection's nonce
    replay.challenge()
    replay.send_auth(signature=replay.sign(nonce))
    assert replay.refusal()[0]['code'] == 'auth_failed'

    enrol(client, 'kiwi-known')
    known = Asker(port, 'kiwi-known')
    known.send_auth(signature=known.sign(known.challenge()))
    reply, code = known.refusal()
    assert reply['code'] == 'admission_refused' and 'enrolled already' in reply['msg']
    assert code == 4403

    first = Asker(port, 'kiwi-twice')
    assert first.request()['msg'] == 'admission_pending'
    second = Asker(port, 'kiwi-twice')  # another key for an id that waits already
    second.send_auth(signature=second.sign(second.challenge()))
    assert second.refusal()[0]['code'] == 'admission_refused'
    assert [a['fingerprint'] for a in client.get('/api/v1/inventory/admissions',
                                                 headers=ADMIN).json()] == [first.fingerprint]
    first.ws.send(json.dumps({'op': 'subscribe', 'topic': 'fleet/ack'}))
    reply, code = first.refusal()  # no frame but auth while it waits
    assert reply['code'] == 'unauthenticated' and code == 4401
    assert wait_for(lambda: client.get('/api/v1/inventory/admissions',
                                       headers=ADMIN).json() == [])
    wait_for(lambda: 'kiwi-twice' not in inventory(client))
    closed = client.post('/api/v1/inventory/admissions/kiwi-twice/accept', headers=ADMIN,
                         json={})
    assert closed.status_code == 404  # its connection closed: its request went with it
    assert client.get('/api/v1/robots/kiwi-twice', headers=ADMIN).status_code == 404


def test_pending_requests_are_capped_and_time_out(make_client: Callable[..., TestClient]
                                                  ) -> None:
    client = make_client(admission_max_pending=1, admission_timeout_s=1.0)
    port = _port(client)
    waiting = Asker(port, 'kiwi-a')
    assert waiting.request()['msg'] == 'admission_pending'
    over = Asker(port, 'kiwi-b')
    over.send_auth(signature=over.sign(over.challenge()))
    reply, code = over.refusal()
    assert reply['code'] == 'admission_refused' and '1 admission requests are pending' in \
        reply['msg'] and code == 4403
    reply, code = waiting.refusal()  # nobody decided within admission_timeout_s
    assert reply['code'] == 'auth_timeout' and code == 4408
    wait_for(lambda: client.get('/api/v1/inventory/admissions', headers=ADMIN).json() == [])
    off = make_client(admission_enabled=False)
    refused = Asker(_port(off), 'kiwi-c')
    refused.send_auth()
    assert refused.refusal()[0]['code'] == 'admission_refused'


def test_the_cli_lists_accepts_and_rejects_through_the_server(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with live_server(discovery_settings(tmp_path)) as live:
        port = live.services.gateway.port
        server = ['--server', live.url, '--token', ADMIN_TOKEN]
        accepted, rejected = Asker(port, 'kiwi-cli-a'), Asker(port, 'kiwi-cli-r')
        assert accepted.request()['msg'] == 'admission_pending'
        assert rejected.request()['msg'] == 'admission_pending'
        capsys.readouterr()
        assert cli_main(['admission', 'list', *server]) == 0
        table = capsys.readouterr().out
        assert 'kiwi-cli-a' in table and accepted.fingerprint in table and 'kiwi-cli-r' in table
        assert cli_main(['admission', 'accept', 'kiwi-cli-a', '--fingerprint',
                         accepted.fingerprint, *server]) == 0
        assert 'kiwi-cli-a: accepted' in capsys.readouterr().out
        assert accepted.recv()['msg'] == 'admission_accepted'
        assert accepted.recv()['msg'] == 'authenticated'
        assert cli_main(['admission', 'reject', 'kiwi-cli-r', *server]) == 0
        assert rejected.refusal()[0]['code'] == 'admission_refused'
        assert cli_main(['admission', 'reject', 'kiwi-cli-r', *server]) == 1
        assert '404' in capsys.readouterr().err
        assert cli_main(['admission', 'list', '--json', *server]) == 0
        assert json.loads(capsys.readouterr().out) == []
        assert cli_main(['admission', 'list', '--server', live.url, '--token',
                         'lkw_not_an_admin_token_000']) == 1
        assert '401' in capsys.readouterr().err


class HeldAccept:
    """An admin's accept held inside the store's enrolment while the asker's connection closes.

    The accept/disconnect race, made sure: the enrolment waits on `gate` until the robot's
    connection has gone; `finish()` lets it commit and returns the accept's answer.
    """

    def __init__(self, client: TestClient, monkeypatch: pytest.MonkeyPatch,
                 robot_id: str) -> None:
        import threading

        from lekiwi_fleet_server.gateway import admissions as admissions_module

        self.port = _port(client)
        desk = client.app.state.services.gateway.admissions  # type: ignore[attr-defined]
        self.asker = Asker(self.port, robot_id)
        assert self.asker.request()['msg'] == 'admission_pending'
        entered, self._gate = threading.Event(), threading.Event()
        real_enrol = admissions_module.enrol_robot

        def slow_enrol(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            assert self._gate.wait(20)
            return real_enrol(*args, **kwargs)

        monkeypatch.setattr(admissions_module, 'enrol_robot', slow_enrol)
        self._answers: list[Any] = []
        self._accepting = threading.Thread(target=lambda: self._answers.append(client.post(
            f'/api/v1/inventory/admissions/{robot_id}/accept', headers=ADMIN, json={})))
        self._accepting.start()
        assert entered.wait(20)  # the admin's accept is in the store now
        self.asker.ws.close()
        wait_for(lambda: not desk.pending())  # the server saw it go

    def same_key(self, asker: Asker) -> Asker:
        """Give `asker` the first asker's key pair; return it."""
        asker.key, asker.public_key = self.asker.key, self.asker.public_key
        return asker

    def finish(self) -> Any:
        """Let the enrolment commit; return the accept's HTTP answer."""
        self._gate.set()
        self._accepting.join(20)
        (answer,) = self._answers
        return answer


def test_an_accept_racing_the_connections_close_hands_the_token_to_the_same_key_later(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldAccept(client, monkeypatch, 'kiwi-race')
    port = held.port
    answer = held.finish()
    assert answer.status_code == 200 and answer.json()['delivered'] is False, answer.text
    # Another key asking for that id gets nothing, and does not spoil the grant.
    thief = Asker(port, 'kiwi-race')
    thief.send_auth(signature=thief.sign(thief.challenge()))
    reply, code = thief.refusal()
    assert reply['code'] == 'admission_refused' and 're-enrol' in reply['msg'] and code == 4403
    # The robot reconnects and asks again with its key: the accepted token comes here.
    again = held.same_key(Asker(port, 'kiwi-race'))
    again.send_auth(signature=again.sign(again.challenge()))
    admitted = again.recv()
    assert admitted['msg'] == 'admission_accepted' and admitted['token'].startswith('lkw_')
    assert again.recv()['msg'] == 'authenticated'
    assert client.app.state.services.gateway.is_connected('kiwi-race')  # type: ignore[attr-defined]
    again.ws.close()
    # Handed over once: asking once more is refused (the robot has its token now).
    once_more = held.same_key(Asker(port, 'kiwi-race'))
    once_more.send_auth(signature=once_more.sign(once_more.challenge()))
    assert once_more.refusal()[0]['code'] == 'admission_refused'


def test_an_accept_that_reaches_its_connection_says_delivered(client: TestClient) -> None:
    asker = Asker(_port(client), 'kiwi-del')
    assert asker.request()['msg'] == 'admission_pending'
    answer = client.post('/api/v1/inventory/admissions/kiwi-del/accept', headers=ADMIN, json={})
    assert answer.status_code == 200 and answer.json()['delivered'] is True
    assert asker.recv()['msg'] == 'admission_accepted'


@pytest.mark.parametrize('same_key', [True, False])
def test_a_robot_that_asks_again_while_its_accept_is_stored(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, same_key: bool) -> None:
    held = HeldAccept(client, monkeypatch, 'kiwi-again')
    # It (or someone with another key) asks again before the enrolment has committed.
    successor = Asker(held.port, 'kiwi-again')
    if same_key:
        held.same_key(successor)
    assert successor.request()['msg'] == 'admission_pending'
    answer = held.finish()
    assert answer.status_code == 200 and answer.json()['delivered'] is same_key
    if same_key:
        assert successor.recv()['msg'] == 'admission_accepted'
        assert successor.recv()['msg'] == 'authenticated'
    else:  # the id is admitted with the first key: the other key's request is refused
        reply, code = successor.refusal()
        assert reply['code'] == 'admission_refused' and 'another key' in reply['msg']
        assert code == 4403
