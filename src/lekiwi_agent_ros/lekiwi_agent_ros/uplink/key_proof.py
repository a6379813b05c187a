"""The key proof of an admitted robot's logins (docs/robot-protocol.md, section 1b).

A robot admitted with its Ed25519 key holds a token the server bound to that key: each
`auth` carries `key_proof` with the public key; the server answers `key_challenge` with a
nonce of that connection, and the robot sends `auth` again with the key's signature of
`lekiwi-key-proof/1\\n` + robot id + `\\n` + nonce. Pure: no I/O, no ROS; the session calls it.
"""

from __future__ import annotations

from typing import Any, Protocol

KEY_PROOF_PREFIX = b'lekiwi-key-proof/1\n'


class KeySigner(Protocol):
    """The robot's key pair (uplink/admission_key.AdmissionKey)."""

    public_key: str

    def sign(self, message: bytes) -> str:
        """Return the base64 signature of `message`."""
        ...


def key_proof_message(robot_id: str, nonce: str) -> bytes:
    """Return the bytes a key-bound robot signs for the server's login challenge."""
    return KEY_PROOF_PREFIX + robot_id.encode() + b'\n' + nonce.encode()


def key_proof(signer: KeySigner, robot_id: str, nonce: str | None = None) -> dict[str, str]:
    """Return the auth frame's `key_proof`: the public key, and with a nonce its signature."""
    proof = {'public_key': signer.public_key}
    if nonce is not None:
        proof['signature'] = signer.sign(key_proof_message(robot_id, nonce))
    return proof


def challenge_nonce(frame: dict[str, Any], robot_id: str) -> str | None:
    """Return the nonce of a `key_challenge` status frame for this robot, or None."""
    nonce = frame.get('nonce')
    if frame.get('msg') != 'key_challenge' or frame.get('robot_id') != robot_id:
        return None
    return nonce if isinstance(nonce, str) and 0 < len(nonce) <= 256 else None
