"""`lekiwi-fleet-server admission` against a stand-in REST API: requests, answers, refusals.

The end-to-end test (test_discovery_admission.py) runs the CLI against the real server; here a
stand-in answers whatever a case needs (an accept whose connection closed, an error without
JSON), and records each request so the test can say what the CLI sent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lekiwi_fleet_server.cli import main as cli_main

TOKEN = 'lkw_admission_cli_token_0123'
BASE = '/api/v1/inventory/admissions'


class StandIn:
    """A REST API on loopback that answers from a script and records each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, bytes]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                stand_in.requests.append({
                    'method': self.command, 'path': self.path,
                    'auth': self.headers.get('Authorization'),
                    'body': json.loads(body) if body else None})
                status, payload = stand_in.answers.pop(0)
                self.send_response(status)
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f'http://127.0.0.1:{self.port}'
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, status: int, payload: Any) -> None:
        self.answers.append((status, payload if isinstance(payload, bytes)
                             else json.dumps(payload).encode()))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """Yield a stand-in API; the environment names no token nor server of its own."""
    for name in ('LEKIWI_ADMIN_TOKEN', 'LEKIWI_BOOTSTRAP_ADMIN_TOKEN', 'LEKIWI_PUBLIC_URL',
                 'LEKIWI_API_HOST', 'LEKIWI_API_PORT'):
        monkeypatch.delenv(name, raising=False)
    stand_in = StandIn()
    try:
        yield stand_in
    finally:
        stand_in.close()


def _accepted(robot_id: str, **extra: Any) -> dict[str, Any]:
    return {'robot_id': robot_id, 'status': 'accepted', 'fingerprint': 'SHA256:abc', **extra}


def test_accept_posts_the_fingerprint_and_tags_and_prints_the_decision(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, _accepted('kiwi-1', delivered=True))
    assert cli_main(['admission', 'accept', 'kiwi-1', '--fingerprint', 'SHA256:abc',
                     '--tag', 'lab', '--tag', 'floor-2', '--server', api.url + '/',
                     '--token', TOKEN]) == 0
    assert api.requests == [{'method': 'POST', 'path': f'{BASE}/kiwi-1/accept',
                             'auth': f'Bearer {TOKEN}',
                             'body': {'fingerprint': 'SHA256:abc', 'tags': ['lab', 'floor-2']}}]
    out = capsys.readouterr().out
    assert out == 'kiwi-1: accepted (key SHA256:abc)\n'


def test_an_accept_whose_connection_closed_says_the_token_waits(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, _accepted('kiwi-2', delivered=False))
    assert cli_main(['admission', 'accept', 'kiwi-2', '--server', api.url,
                     '--token', TOKEN]) == 0
    out = capsys.readouterr().out
    assert out.startswith('kiwi-2: accepted (key SHA256:abc)\n')
    assert 'its connection closed as it was accepted' in out
    assert 'waits for the same key to ask again' in out


def test_reject_sends_no_tags(api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, {'robot_id': 'kiwi-3', 'status': 'rejected', 'fingerprint': 'SHA256:f'})
    assert cli_main(['admission', 'reject', 'kiwi-3', '--tag', 'ignored', '--server', api.url,
                     '--token', TOKEN]) == 0
    assert api.requests[0]['path'] == f'{BASE}/kiwi-3/reject'
    assert api.requests[0]['body'] == {'fingerprint': None}
    assert capsys.readouterr().out == 'kiwi-3: rejected (key SHA256:f)\n'


def test_the_list_shows_a_dash_for_an_unknown_address(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(200, [{'robot_id': 'kiwi-4', 'fingerprint': 'SHA256:four', 'address': None},
                     {'robot_id': 'kiwi-5', 'fingerprint': 'SHA256:five',
                      'address': '10.0.0.5'}])
    assert cli_main(['admission', 'list', '--server', api.url, '--token', TOKEN]) == 0
    assert api.requests[0]['method'] == 'GET' and api.requests[0]['path'] == BASE
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['ROBOT', 'FINGERPRINT', 'ADDRESS']
    assert lines[1].split() == ['kiwi-4', 'SHA256:four', '-']
    assert lines[2].split() == ['kiwi-5', 'SHA256:five', '10.0.0.5']


def test_the_server_and_token_default_to_the_settings_and_the_environment(
        api: StandIn, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_API_HOST', '127.0.0.1')
    monkeypatch.setenv('LEKIWI_API_PORT', str(api.port))
    monkeypatch.setenv('LEKIWI_BOOTSTRAP_ADMIN_TOKEN', 'lkw_bootstrap_token_00000')
    api.answer(200, [])
    assert cli_main(['admission', 'list', '--json']) == 0
    assert api.requests[-1]['auth'] == 'Bearer lkw_bootstrap_token_00000'
    assert json.loads(capsys.readouterr().out) == []
    monkeypatch.setenv('LEKIWI_ADMIN_TOKEN', 'lkw_environment_token_000')  # before the settings'
    api.answer(200, [])
    assert cli_main(['admission', 'list']) == 0
    assert api.requests[-1]['auth'] == 'Bearer lkw_environment_token_000'


def test_a_server_that_is_not_http_is_refused_before_any_request(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(['admission', 'list', '--server', f'ftp://127.0.0.1:{api.port}',
                     '--token', TOKEN]) == 2
    assert "--server must be an http(s) URL, not 'ftp://127.0.0.1:" in capsys.readouterr().err
    assert api.requests == []


def test_without_an_admin_token_nothing_is_asked(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(['admission', 'list', '--server', api.url]) == 2
    assert 'an admin token is needed' in capsys.readouterr().err
    assert api.requests == []


@pytest.mark.parametrize('action', ['accept', 'reject'])
def test_a_decision_must_name_the_robot(action: str, api: StandIn,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(['admission', action, '--server', api.url, '--token', TOKEN]) == 2
    assert f'admission {action}: name the robot' in capsys.readouterr().err
    assert api.requests == []


def test_an_http_error_prints_its_detail_or_else_its_reason(
        api: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    api.answer(409, {'detail': 'the request has another key'})
    assert cli_main(['admission', 'accept', 'kiwi-6', '--server', api.url,
                     '--token', TOKEN]) == 1
    assert capsys.readouterr().err == 'admission accept: 409: the request has another key\n'
    api.answer(502, b'<html>bad gateway</html>')  # a proxy's page, not the API's JSON
    assert cli_main(['admission', 'reject', 'kiwi-6', '--server', api.url,
                     '--token', TOKEN]) == 1
    assert capsys.readouterr().err == 'admission reject: 502: Bad Gateway\n'
    api.answer(500, {'error': 'no detail here'})
    assert cli_main(['admission', 'list', '--server', api.url, '--token', TOKEN]) == 1
    assert capsys.readouterr().err == 'admission list: 500: Internal Server Error\n'


def test_an_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as held:  # a port bound but not listening: the connection is refused
        held.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{held.getsockname()[1]}'
        assert cli_main(['admission', 'list', '--server', url, '--token', TOKEN]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'admission: cannot reach {url}: ') and 'refused' in err
