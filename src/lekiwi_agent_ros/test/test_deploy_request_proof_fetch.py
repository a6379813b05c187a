"""The download prover's challenge fetch against a real loopback HTTP server, and its loader."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lekiwi_agent_ros.deploy.key_challenge import CHALLENGE_PATH
from lekiwi_agent_ros.deploy.request_proof import (
    RequestProofError,
    RequestProver,
    _fetch_json,
    load_prover,
)
from lekiwi_agent_ros.uplink.admission_key import AdmissionKey

CHALLENGE = (200, b'{"nonce": "n1", "expires_in_s": 60, "key_bound": true}')
ANSWERS = {'/object': CHALLENGE, CHALLENGE_PATH: CHALLENGE,
           '/list': (200, b'[1, 2]'), '/bad': (200, b'not json'), '/gone': (404, b'{}')}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        status, body = ANSWERS.get(self.path, (500, b''))
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


def test_the_fetch_returns_an_object_and_refuses_everything_else(server: str) -> None:
    assert _fetch_json(f'{server}/object', {}, 5.0)['nonce'] == 'n1'
    with pytest.raises(RequestProofError, match='not a JSON object'):
        _fetch_json(f'{server}/list', {}, 5.0)
    with pytest.raises(RequestProofError, match='key challenge: '):
        _fetch_json(f'{server}/bad', {}, 5.0)
    with pytest.raises(RequestProofError, match='HTTP 404'):
        _fetch_json(f'{server}/gone', {}, 5.0)
    with pytest.raises(RequestProofError, match='key challenge: '):
        _fetch_json('http://127.0.0.1:9/nothing', {}, 1.0)


def test_a_prover_is_loaded_only_with_a_key_and_signs_with_it(
        tmp_path: Path, server: str) -> None:
    assert load_prover(server, 'kiwi-1', 'tok', '') is None
    assert load_prover(server, 'kiwi-1', 'tok', str(tmp_path / 'none')) is None
    key_file = tmp_path / 'admission.key'
    key = AdmissionKey.load_or_create(str(key_file))
    prover = load_prover(server, 'kiwi-1', 'tok', str(key_file))
    assert isinstance(prover, RequestProver)
    header = prover.headers('GET', f'{server}/api/v1/robot/releases/1.0')
    (value,) = header.values()
    assert value.startswith(f'{key.public_key} n1 ')
