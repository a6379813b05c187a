"""The pure core of key-bound robots' HTTP request proofs."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lekiwi_fleet_server.domain.admission import key_fingerprint
from lekiwi_fleet_server.domain.request_proof import (
    RequestProofRefused,
    check_request_proof,
    new_request_nonce,
    signed_request,
)

KEY = Ed25519PrivateKey.generate()
RAW = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
PUBLIC = base64.b64encode(RAW).decode()
FINGERPRINT = key_fingerprint(RAW)
NOW = 1_000_000.0


def header(nonce: str, method: str = 'GET', path: str = '/p', robot_id: str = 'r1') -> str:
    signature = base64.b64encode(KEY.sign(signed_request(robot_id, nonce, method, path)))
    return f'{PUBLIC} {nonce} {signature.decode()}'


def check(value: str | None, *, now: float = NOW, fingerprint: str | None = FINGERPRINT,
          method: str = 'GET', path: str = '/p') -> None:
    check_request_proof('r1', fingerprint, value, method=method, path=path, now=now, ttl_s=60)


def test_a_good_proof_passes_until_its_nonce_expires() -> None:
    nonce = new_request_nonce(NOW, 60)
    check(header(nonce))
    check(header(nonce), now=NOW + 59)
    with pytest.raises(RequestProofRefused, match='expired'):
        check(header(nonce), now=NOW + 61)


def test_a_token_only_robot_needs_no_proof() -> None:
    check(None, fingerprint=None)
    check('garbage', fingerprint=None)


@pytest.mark.parametrize('value, reason', [
    (None, 'must carry'),
    ('', 'must carry'),
    ('one two', 'must be'),
    ('x' * 600, 'must be'),
    (f'notbase64! {new_request_nonce(NOW, 60)} sig', 'public_key'),
    (f'{PUBLIC} v2.1.x sig', 'not a nonce'),
    (f'{PUBLIC} v1.abc.x sig', 'not a nonce'),
])
def test_malformed_proofs_are_refused_with_a_reason(value: str | None, reason: str) -> None:
    with pytest.raises(RequestProofRefused, match=reason):
        check(value)


def test_a_proof_is_for_its_key_robot_and_request_only() -> None:
    nonce = new_request_nonce(NOW, 60)
    other = Ed25519PrivateKey.generate()
    other_raw = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(RequestProofRefused, match='is not the key'):
        check(header(nonce), fingerprint=key_fingerprint(other_raw))
    for bad in (header(nonce, path='/other'), header(nonce, method='POST'),
                header(nonce, robot_id='r2')):
        with pytest.raises(RequestProofRefused, match='signature'):
            check(bad)


def test_a_nonce_claiming_more_life_than_the_server_gives_is_refused() -> None:
    with pytest.raises(RequestProofRefused, match='more life'):
        check(header(new_request_nonce(NOW, 3600)))
