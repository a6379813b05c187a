"""Token generation and hashing."""

from __future__ import annotations

import hashlib

from lekiwi_fleet_server.domain.tokens import generate_token, hash_token, token_matches


def test_tokens_are_prefixed_random_and_hashed() -> None:
    a, b = generate_token(), generate_token()
    assert a.startswith('lkw_') and len(a) >= 40 and a != b
    assert hash_token(a) == hashlib.sha256(a.encode()).hexdigest()
    assert token_matches(a, hash_token(a))
    assert not token_matches(b, hash_token(a))
    assert not token_matches(a, 'not-a-hash')
