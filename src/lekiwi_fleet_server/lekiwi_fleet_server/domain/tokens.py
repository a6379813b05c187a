"""Robot and operator tokens: generation, SHA-256 hashing and constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = 'lkw_'
_TOKEN_BYTES = 32


def generate_token() -> str:
    """Return a new random token (`lkw_` + 43 URL-safe characters, 256 bits of entropy)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a token: the only form the server stores."""
    return hashlib.sha256(token.encode('utf-8')).hexdigest()


def token_matches(token: str, token_sha256: str) -> bool:
    """Tell whether a presented token hashes to the stored hash, in constant time."""
    # compare_digest on equal-length ASCII strings leaks nothing about where they differ.
    return hmac.compare_digest(hash_token(token).encode('ascii'), token_sha256.encode('ascii'))
