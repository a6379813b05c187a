"""The pure key challenge both HTTP clients share: when to ask, what an answer must hold."""

from __future__ import annotations

import pytest

from lekiwi_agent_ros.deploy.key_challenge import HEADER, KeyChallenge, signed_request


class Signer:
    public_key = 'PUB'

    def sign(self, message: bytes) -> str:
        return 'sig:' + message.decode()


def test_a_bound_nonce_is_reused_until_the_margin_before_it_expires() -> None:
    challenge = KeyChallenge('kiwi', Signer())
    assert challenge.due(0.0) and challenge.header('GET', '/a') == {}  # nothing known yet
    challenge.answered({'nonce': 'n1', 'expires_in_s': 60, 'key_bound': True}, 5.0)
    expected = 'sig:' + signed_request('kiwi', 'n1', 'POST', '/a/b').decode()
    assert challenge.header('post', '/a/b') == {HEADER: f'PUB n1 {expected}'}
    assert not challenge.due(54.9)  # asked at 5 s, 60 s to live, renewed 10 s early
    assert challenge.due(55.0)


def test_a_token_only_robot_is_never_challenged_again_and_one_without_a_key_never() -> None:
    unbound = KeyChallenge('kiwi', Signer())
    unbound.answered({'nonce': 'n1', 'expires_in_s': 60, 'key_bound': False}, 0.0)
    assert not unbound.due(1e9) and unbound.header('GET', '/a') == {}
    keyless = KeyChallenge('kiwi', None)
    assert not keyless.due(0.0) and keyless.header('GET', '/a') == {}


@pytest.mark.parametrize(('answer', 'reason'), [
    ([], 'not a JSON object'),
    ({'nonce': 7, 'expires_in_s': 60, 'key_bound': True}, 'without nonce'),
    ({'nonce': 'n1', 'key_bound': True}, 'expires_in_s'),
    ({'nonce': 'n1', 'expires_in_s': 60, 'key_bound': 'yes'}, 'key_bound'),
])
def test_an_answer_it_cannot_read_is_refused_and_changes_nothing(
        answer: object, reason: str) -> None:
    challenge = KeyChallenge('kiwi', Signer())
    with pytest.raises(ValueError, match=reason):
        challenge.answered(answer, 0.0)
    assert challenge.due(0.0) and challenge.header('GET', '/a') == {}
