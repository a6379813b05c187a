"""A robot token bound to the key it was admitted with: the pure core of the key proof.

An admitted robot (domain/admission.py) is enrolled with the tag `key:<fingerprint>` of the
Ed25519 key it proved on its admission connection. The token it then received is only half of
its credentials: every later `auth` must also prove possession of that key, so a token copied
off the robot (a backup, a log, a disk image) does not log anyone else in. The exchange, on one
connection (docs/robot-protocol.md, section 1b):

1. `auth` with the token and `key_proof.public_key`: the token is checked first (nothing is
   said about keys to a peer without a good token), then the key's fingerprint against the
   robot's tag; the server answers `key_challenge` with a nonce of this connection.
2. `auth` with the token and the key's signature of that nonce: authenticated.

A token without any `key_proof` for a key-bound robot is refused at once with `auth_failed`
and a message naming the binding (not left to time out). Robots enrolled by token only carry
no `key:` tag and authenticate with their token as before (a `key_proof` they send is
ignored). The signed bytes differ from admission's (another prefix), so a signature made for
one exchange is never good for the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from lekiwi_fleet_server.domain.admission import (
    key_fingerprint,
    parse_public_key,
    verify_signature,
)
from lekiwi_fleet_server.domain.protocol import AdmissionProof, ErrorCode, ProtocolError

KEY_TAG_PREFIX = 'key:'
SIGNED_PREFIX = b'lekiwi-key-proof/1\n'


def key_tag(fingerprint: str) -> str:
    """Return the robot tag that binds its token to the key of `fingerprint`."""
    return KEY_TAG_PREFIX + fingerprint


def bound_fingerprint(tags: Iterable[str]) -> str | None:
    """Return the key fingerprint a robot's tags bind it to, or None (token only)."""
    for tag in tags:
        if tag.startswith(KEY_TAG_PREFIX + 'SHA256:'):
            return tag[len(KEY_TAG_PREFIX):]
    return None


def signed_message(robot_id: str, nonce: str) -> bytes:
    """Return the bytes a key-bound robot signs at login: prefix, robot id, the nonce."""
    return SIGNED_PREFIX + robot_id.encode() + b'\n' + nonce.encode()


def check_key_proof(robot_id: str, fingerprint: str | None, proof: AdmissionProof | None,
                    nonce: str | None) -> bool:
    """Check a token-authenticated robot's key proof; True: proved, False: challenge it.

    `fingerprint` is the key the robot is bound to (None: token only, always True); `nonce`
    the challenge sent to this connection, if one was. Raise `auth_failed` when the proof is
    missing, for another key, or its signature does not verify.
    """
    if fingerprint is None:
        return True
    if proof is None:
        raise ProtocolError(ErrorCode.AUTH_FAILED,
                            f'robot {robot_id!r} is bound to key {fingerprint}: its auth must '
                            "carry 'key_proof' (the key's signature of the server's nonce)",
                            'auth')
    try:
        offered = key_fingerprint(parse_public_key(proof.public_key))
    except ValueError as exc:
        raise ProtocolError(ErrorCode.AUTH_FAILED, f'key_proof: {exc}', 'auth') from None
    if offered != fingerprint:
        raise ProtocolError(ErrorCode.AUTH_FAILED,
                            f'key_proof key {offered} is not the key robot {robot_id!r} is '
                            f'bound to ({fingerprint})', 'auth')
    if proof.signature is None or nonce is None:
        return False
    if not verify_signature(parse_public_key(proof.public_key),
                            signed_message(robot_id, nonce), proof.signature):
        raise ProtocolError(ErrorCode.AUTH_FAILED,
                            'key_proof: the signature does not match the key and nonce', 'auth')
    return True
