"""The agent's per-request key proof: one challenge reused until near expiry, signed per path."""

from __future__ import annotations

import pytest

from lekiwi_agent_ros.deploy.key_challenge import HEADER, signed_request
from lekiwi_agent_ros.deploy.request_proof import RequestProofError, RequestProver


class Signer:
    public_key = 'PUB'

    def sign(self, message: bytes) -> str:
        return 'sig:' + message.decode()


class Challenges:
    def __init__(self, *answers: dict[str, object]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, headers: dict[str, str], timeout: float) -> dict[str, object]:
        self.asked.append((url, headers))
        return self.answers.pop(0)


def test_a_bound_robot_signs_each_request_and_renews_the_nonce_before_it_expires() -> None:
    clock = [0.0]
    fetch = Challenges({'nonce': 'n1', 'expires_in_s': 60, 'key_bound': True},
                       {'nonce': 'n2', 'expires_in_s': 60, 'key_bound': True})
    prover = RequestProver('http://s:1/', 'kiwi', 'tok', Signer(), now=lambda: clock[0],
                           fetch=fetch)
    first = prover.headers('GET', 'http://s:1/api/v1/blobs/ab?x=1')
    expected = 'sig:' + signed_request('kiwi', 'n1', 'GET', '/api/v1/blobs/ab').decode()
    assert first == {HEADER: f'PUB n1 {expected}'}
    assert fetch.asked == [('http://s:1/api/v1/robot/key-challenge',
                            {'Authorization': 'Bearer tok', 'X-Robot-Id': 'kiwi'})]
    clock[0] = 49.0
    assert ' n1 ' in prover.headers('GET', 'http://s:1/other')[HEADER]
    clock[0] = 51.0  # within the renewal margin: a fresh nonce
    assert ' n2 ' in prover.headers('GET', 'http://s:1/other')[HEADER]
    assert len(fetch.asked) == 2


def test_a_token_only_robot_asks_once_and_sends_no_header() -> None:
    fetch = Challenges({'nonce': 'n1', 'expires_in_s': 60, 'key_bound': False})
    prover = RequestProver('http://s', 'kiwi', 'tok', Signer(), fetch=fetch)
    assert prover.headers('GET', 'http://s/a') == {}
    assert prover.headers('GET', 'http://s/b') == {}
    assert len(fetch.asked) == 1


def test_a_challenge_it_cannot_read_is_an_error() -> None:
    prover = RequestProver('http://s', 'kiwi', 'tok', Signer(),
                           fetch=Challenges({'nonce': 7}))
    with pytest.raises(RequestProofError, match='nonce'):
        prover.headers('GET', 'http://s/a')
