"""The key proof of a key-bound robot's downloads (the server's domain/request_proof.py).

A robot admitted with its Ed25519 key holds a token the server bound to that key, and the
server refuses that token alone on its HTTP routes too (release manifests and blobs). So each
request carries `X-Robot-Key-Proof: <public key> <nonce> <signature>`: the nonce comes from
`GET /api/v1/robot/key-challenge` (with the token) and is reused until shortly before the
server said it expires; the signature is of `lekiwi-request-proof/1\\n` + robot id + `\\n` +
nonce + `\\n` + method + ` ` + URL path, so it is good for that one request only. A robot
whose token is not bound (the challenge says `key_bound: false`) sends no header after that.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Protocol

HEADER = 'X-Robot-Key-Proof'
SIGNED_PREFIX = b'lekiwi-request-proof/1\n'
CHALLENGE_PATH = '/api/v1/robot/key-challenge'
_RENEW_MARGIN_S = 10.0  # ask for a fresh nonce this long before the old one expires


class RequestProofError(Exception):
    """The key challenge could not be fetched or was not understood."""


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


def _fetch_json(url: str, headers: dict[str, str], timeout_s: float) -> dict[str, object]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RequestProofError(f'key challenge: HTTP {exc.code} {exc.reason}') from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RequestProofError(f'key challenge: {exc}') from None
    if not isinstance(data, dict):
        raise RequestProofError('key challenge: not a JSON object')
    return data


class RequestProver:
    """Give each request of the robot its key-proof header (or none for a token-only robot)."""

    def __init__(self, server_url: str, robot_id: str, token: str, signer: KeySigner, *,
                 now: Callable[[], float] = time.monotonic, timeout_s: float = 30.0,
                 fetch: Callable[[str, dict[str, str], float], dict[str, object]] = _fetch_json
                 ) -> None:
        self._url = server_url.rstrip('/') + CHALLENGE_PATH
        self._robot_id = robot_id
        self._token = token
        self._signer = signer
        self._now = now
        self._timeout = timeout_s
        self._fetch = fetch
        self._bound: bool | None = None  # unknown until the first challenge
        self._nonce: str | None = None
        self._renew_at = 0.0

    def headers(self, method: str, url: str) -> dict[str, str]:
        """Return the headers that prove the key for `method url`; raise RequestProofError."""
        if self._bound is False:
            return {}
        if self._nonce is None or self._now() >= self._renew_at:
            self._challenge()
        if not self._bound or self._nonce is None:
            return {}
        path = urllib.parse.urlsplit(url).path
        signature = self._signer.sign(signed_request(self._robot_id, self._nonce, method, path))
        return {HEADER: f'{self._signer.public_key} {self._nonce} {signature}'}

    def _challenge(self) -> None:
        started = self._now()
        answer = self._fetch(self._url, {'Authorization': f'Bearer {self._token}',
                                         'X-Robot-Id': self._robot_id}, self._timeout)
        nonce, ttl, bound = answer.get('nonce'), answer.get('expires_in_s'), answer.get(
            'key_bound')
        if not isinstance(nonce, str) or not isinstance(ttl, int | float) \
                or not isinstance(bound, bool):
            raise RequestProofError('key challenge: an answer without nonce, expires_in_s '
                                    'and key_bound')
        self._bound, self._nonce = bound, nonce
        self._renew_at = started + max(0.0, float(ttl) - _RENEW_MARGIN_S)


def load_prover(server_url: str, robot_id: str, token: str, key_file: str
                ) -> RequestProver | None:
    """Return a prover with the robot's admission key at `key_file`, or None if it has none.

    The key is only read, never made: a robot without one is enrolled by token only.
    """
    if not key_file or not os.path.exists(key_file):
        return None
    # Imported only here: a robot enrolled by token never loads cryptography (memory).
    from lekiwi_agent_ros.uplink.admission_key import AdmissionKey

    return RequestProver(server_url, robot_id, token, AdmissionKey.load_or_create(key_file))
