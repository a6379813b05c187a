"""Admission of robots without a token, like Mender's device authentication: the pure core.

A robot that has no token connects, names its robot id and an Ed25519 public key it
generated, and signs a nonce the server chose for that connection (so the key's owner is on
that connection, and a signature seen elsewhere cannot be replayed). The request waits in the
`AdmissionBook` until an admin accepts or rejects it; the token then goes to that connection
only. The book is bounded (a cap on requests waiting, a rate of new ones) and keeps a request
only while its connection is open: nothing is stored for a robot that was not accepted.
Time comes in as an argument; the book holds no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Hashable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lekiwi_fleet_server.domain.rate_limit import TokenBucket

SIGNED_PREFIX = b'lekiwi-admission/1\n'
_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


class AdmissionRefused(Exception):
    """A request the book will not take (cap, rate, duplicate) or a decision it cannot make."""


def new_nonce() -> str:
    """Return a fresh nonce for one connection's challenge (URL-safe, 32 random bytes)."""
    return secrets.token_urlsafe(32)


def signed_message(robot_id: str, nonce: str) -> bytes:
    """Return the bytes a robot signs: the prefix, its robot id and the server's nonce."""
    return SIGNED_PREFIX + robot_id.encode() + b'\n' + nonce.encode()


def _b64(text: object, size: int, what: str) -> bytes:
    if type(text) is not str or len(text) > 4 * size:
        raise ValueError(f'{what} must be a base64 string of {size} bytes')
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f'{what} is not valid base64') from None
    if len(raw) != size:
        raise ValueError(f'{what} must be {size} bytes, got {len(raw)}')
    return raw


def parse_public_key(text: object) -> bytes:
    """Return the raw 32 bytes of a base64 Ed25519 public key, or raise ValueError."""
    return _b64(text, _KEY_BYTES, 'public_key')


def key_fingerprint(public_key: bytes) -> str:
    """Return the key's fingerprint: `SHA256:` and 43 URL-safe base64 characters."""
    # URL-safe, so that the fingerprint is also a valid robot tag (`key:SHA256:...`).
    digest = base64.urlsafe_b64encode(hashlib.sha256(public_key).digest()).decode().rstrip('=')
    return f'SHA256:{digest}'


def verify_signature(public_key: bytes, message: bytes, signature: object) -> bool:
    """Tell whether `signature` (base64) is the key's Ed25519 signature of `message`."""
    try:
        raw = _b64(signature, _SIGNATURE_BYTES, 'signature')
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, message)
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """A robot's request waiting for an admin, tied to the connection that proved its key."""

    robot_id: str
    public_key: bytes
    fingerprint: str
    requested_at: float
    address: str | None
    connection: Hashable  # whatever the gateway knows the connection by

    def as_dict(self) -> dict[str, object]:
        """Return the JSON view (REST, CLI)."""
        return {'robot_id': self.robot_id, 'status': 'pending',
                'public_key': base64.b64encode(self.public_key).decode(),
                'fingerprint': self.fingerprint, 'requested_at': self.requested_at,
                'address': self.address}


class AdmissionBook:
    """The admission requests waiting for an admin: at most `max_pending`, `rate_per_s` new."""

    def __init__(self, max_pending: int, rate_per_s: float, burst: int, now: float) -> None:
        if max_pending < 1:
            raise ValueError('max_pending must be >= 1')
        self._max = max_pending
        self._rate = TokenBucket(rate_per_s, burst, now)
        self._pending: dict[str, AdmissionRequest] = {}
        self._deciding: set[str] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self) -> list[AdmissionRequest]:
        """Return the waiting requests, oldest first."""
        return sorted(self._pending.values(), key=lambda r: r.requested_at)

    def get(self, robot_id: str) -> AdmissionRequest | None:
        """Return the waiting request of a robot, or None."""
        return self._pending.get(robot_id)

    def request(self, robot_id: str, public_key: bytes, connection: Hashable, *, now: float,
                address: str | None = None) -> AdmissionRequest:
        """Take a request whose key was proved; raise AdmissionRefused when it cannot wait."""
        if robot_id in self._pending:
            # First come keeps it: a second key for the same id must not displace the one an
            # admin may be looking at (its fingerprint is what the admin compares).
            raise AdmissionRefused(f'an admission request of {robot_id!r} is pending already')
        if len(self._pending) >= self._max:
            raise AdmissionRefused(f'{self._max} admission requests are pending; try later')
        if not self._rate.admit(now):
            raise AdmissionRefused('too many admission requests; try again in '
                                   f'{max(0.1, self._rate.retry_after_s()):.1f} s')
        request = AdmissionRequest(robot_id, public_key, key_fingerprint(public_key), now,
                                   address, connection)
        self._pending[robot_id] = request
        return request

    def begin_decision(self, robot_id: str, fingerprint: str | None = None) -> AdmissionRequest:
        """Claim a request for accept/reject so that only one decision runs; raise if absent.

        With `fingerprint`, the admin's decision holds only for the key they saw.
        """
        request = self._pending.get(robot_id)
        if request is None:
            raise AdmissionRefused(f'no admission request of {robot_id!r} is pending')
        if robot_id in self._deciding:
            raise AdmissionRefused(f'the admission of {robot_id!r} is being decided')
        if fingerprint is not None and fingerprint != request.fingerprint:
            raise AdmissionRefused(f'the pending request of {robot_id!r} has key '
                                   f'{request.fingerprint}, not {fingerprint}')
        self._deciding.add(robot_id)
        return request

    def end_decision(self, robot_id: str) -> AdmissionRequest | None:
        """Drop a decided request (accepted or rejected); return it."""
        self._deciding.discard(robot_id)
        return self._pending.pop(robot_id, None)

    def abandon_decision(self, robot_id: str) -> None:
        """Give a claimed request back (its decision failed, e.g. the store was down)."""
        self._deciding.discard(robot_id)

    def withdraw(self, robot_id: str, connection: Hashable) -> AdmissionRequest | None:
        """Drop a robot's request when its connection closes (only that connection's)."""
        request = self._pending.get(robot_id)
        if request is None or request.connection != connection:
            return None
        self._deciding.discard(robot_id)
        return self._pending.pop(robot_id)
