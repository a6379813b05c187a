"""The key proof of a key-bound robot's HTTP requests: the pure core.

A robot admitted with its Ed25519 key (domain/key_binding.py) logs in over the WebSocket by
signing a nonce of that connection. Its HTTP requests (release manifests and blobs, the
long-polling transport) have no connection to hold a nonce, so each carries its proof in a
header instead, `X-Robot-Key-Proof: <public key> <nonce> <signature>`:

1. `GET /api/v1/robot/key-challenge` with the robot's token answers a nonce
   `v1.<expiry, Unix s>.<random>`: stateless, so any server process checks it (no nonce
   store shared between processes), and its expiry was chosen by the server's clock (a
   robot's clock, a Pi without a battery, is not trusted for freshness).
2. Each request signs `lekiwi-request-proof/1\\n` + robot id + `\\n` + nonce + `\\n` +
   method + ` ` + path. A proof is good for that one route only until the nonce expires: a
   header seen in a log replays at most that request for at most `ttl_s`, where a nonce per
   request would double the round trips of a download of many blobs.

A token alone never counts for a key-bound robot; robots enrolled by token only need no
header (a header they send is ignored). The signed prefix differs from the WebSocket login's
and admission's, so a signature made for one exchange is good for no other. Pure: time comes
in as an argument.
"""

from __future__ import annotations

import secrets

from lekiwi_fleet_server.domain.admission import (
    key_fingerprint,
    parse_public_key,
    verify_signature,
)

HEADER = 'X-Robot-Key-Proof'
SIGNED_PREFIX = b'lekiwi-request-proof/1\n'
_NONCE_VERSION = 'v1'
_MAX_HEADER = 512


class RequestProofRefused(Exception):
    """A key-bound robot's request without a good proof; the message says what is wrong."""


def new_request_nonce(now: float, ttl_s: float) -> str:
    """Return a nonce that expires `ttl_s` after `now` (server time)."""
    return f'{_NONCE_VERSION}.{int(now + ttl_s)}.{secrets.token_urlsafe(18)}'


def signed_request(robot_id: str, nonce: str, method: str, path: str) -> bytes:
    """Return the bytes a key-bound robot signs for one HTTP request."""
    return (SIGNED_PREFIX + robot_id.encode() + b'\n' + nonce.encode() + b'\n'
            + method.upper().encode() + b' ' + path.encode())


def check_request_proof(robot_id: str, fingerprint: str | None, header: str | None, *,
                        method: str, path: str, now: float, ttl_s: float) -> None:
    """Accept the request of a robot bound to `fingerprint` (None: token only), or raise.

    Raises RequestProofRefused when the header is missing, malformed, for another key, its
    nonce expired (or claims more life than the server gives), or the signature is wrong.
    """
    if fingerprint is None:
        return
    if not header:
        raise RequestProofRefused(
            f'robot {robot_id!r} is bound to key {fingerprint}: its requests must carry '
            f'{HEADER} (GET /api/v1/robot/key-challenge for a nonce)')
    parts = header.split(' ') if len(header) <= _MAX_HEADER else []
    if len(parts) != 3:
        raise RequestProofRefused(f'{HEADER} must be "<public key> <nonce> <signature>"')
    public_text, nonce, signature = parts
    try:
        public_key = parse_public_key(public_text)
    except ValueError as exc:
        raise RequestProofRefused(f'{HEADER}: {exc}') from None
    offered = key_fingerprint(public_key)
    if offered != fingerprint:
        raise RequestProofRefused(f'{HEADER}: key {offered} is not the key robot '
                                  f'{robot_id!r} is bound to ({fingerprint})')
    fields = nonce.split('.')
    if len(fields) != 3 or fields[0] != _NONCE_VERSION or not fields[1].isdigit():
        raise RequestProofRefused(f'{HEADER}: not a nonce of this server')
    expires = int(fields[1])
    if expires <= now:
        raise RequestProofRefused(f'{HEADER}: the nonce expired: ask for another')
    if expires > now + ttl_s + 1:
        raise RequestProofRefused(f'{HEADER}: the nonce claims more life than this server gives')
    if not verify_signature(public_key, signed_request(robot_id, nonce, method, path),
                            signature):
        raise RequestProofRefused(f'{HEADER}: the signature does not match the key, nonce '
                                  'and request')
