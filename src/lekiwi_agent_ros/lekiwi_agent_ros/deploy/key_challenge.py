"""The per-request key proof of a key-bound robot (the server's domain/request_proof.py).

A robot admitted with its Ed25519 key holds a token the server bound to that key, and the
server refuses that token alone on its HTTP routes too (release downloads, the polling uplink).
So each request carries `X-Robot-Key-Proof: <public key> <nonce> <signature>`: the nonce comes
from `GET /api/v1/robot/key-challenge` (with the token) and is reused until shortly before the
server said it expires; the signature is of `lekiwi-request-proof/1\\n` + robot id + `\\n` +
nonce + `\\n` + method + ` ` + URL path, so it is good for that one request only. A robot
whose token is not bound (the challenge says `key_bound: false`) sends no header after that.

Pure: no I/O. The downloads (request_proof.py, urllib) and the polling uplink
(uplink/http_transport.py, httpx) fetch the challenge and hand its answer to `KeyChallenge`.
"""

from __future__ import annotations

from typing import Protocol

HEADER = 'X-Robot-Key-Proof'
SIGNED_PREFIX = b'lekiwi-request-proof/1\n'
CHALLENGE_PATH = '/api/v1/robot/key-challenge'
RENEW_MARGIN_S = 10.0  # ask for a fresh nonce this long before the old one expires


class KeySigner(Protocol):
    """The robot's key pair (uplink/admission_key.AdmissionKey)."""

    public_key: str

    def sign(self, message: bytes) -> str:
        """Return the base64 signature of `message`."""
        ...


def signed_request(robot_id: str, nonce: str, method: str, path: str) -> bytes:
    """Return the bytes a key-bound robot signs for one HTTP request."""
    return (SIGNED_PREFIX + robot_id.encode() + b'\n' + nonce.encode() + b'\n'
            + method.upper().encode() + b' ' + path.encode())


class KeyChallenge:
    """What a robot knows of its key challenge: when to ask again, and each request's proof."""

    def __init__(self, robot_id: str, signer: KeySigner | None) -> None:
        self._robot_id = robot_id
        self._signer = signer
        # Without a key there is nothing to prove: never ask. With one, ask before the first
        # request: only the server knows whether it bound the token to the key.
        self._bound: bool | None = None if signer is not None else False
        self._nonce: str | None = None
        self._renew_at = float('-inf')

    def due(self, now: float) -> bool:
        """Return True when the challenge must be fetched before the next request."""
        return self._bound is not False and (self._nonce is None or now >= self._renew_at)

    def answered(self, answer: object, asked_at: float) -> None:
        """Take the challenge's JSON answer, asked at `asked_at`; ValueError if it is not one."""
        if not isinstance(answer, dict):
            raise ValueError('not a JSON object')
        nonce, ttl, bound = answer.get('nonce'), answer.get('expires_in_s'), answer.get(
            'key_bound')
        if not isinstance(nonce, str) or not isinstance(ttl, int | float) \
                or not isinstance(bound, bool):
            raise ValueError('an answer without nonce, expires_in_s and key_bound')
        self._bound, self._nonce = bound, nonce
        # From when it was asked, not answered: the server's clock started before the reply.
        self._renew_at = asked_at + max(0.0, float(ttl) - RENEW_MARGIN_S)

    def header(self, method: str, path: str) -> dict[str, str]:
        """Return the key-proof header of `method path`, or none for a token-only robot."""
        if not self._bound or self._nonce is None or self._signer is None:
            return {}
        signature = self._signer.sign(signed_request(self._robot_id, self._nonce, method, path))
        return {HEADER: f'{self._signer.public_key} {self._nonce} {signature}'}
