"""The robot's admission key pair, and the token file an accepted admission writes.

A robot without a token asks the fleet server for admission with an Ed25519 public key
(docs/robot-protocol.md, section 1a). The key pair is made once and kept, 0600, next to the
outbox, so that the robot asks with the same key after a restart and the fingerprint an admin
compared stays true. No ROS here: the uplink node builds one and hands it to the client.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)


class AdmissionKey:
    """An Ed25519 key pair that signs the server's admission challenge."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()

    @classmethod
    def load_or_create(cls, path: str) -> AdmissionKey:
        """Read the key pair at `path`, or make one and write it there (0600) first."""
        try:
            with open(path, 'rb') as handle:
                key = load_pem_private_key(handle.read(), password=None)
        except FileNotFoundError:
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            write_private(path, pem)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f'{path} holds a key that is not Ed25519')
        return cls(key)

    def sign(self, message: bytes) -> str:
        """Return the base64 Ed25519 signature of `message`."""
        return base64.b64encode(self._key.sign(message)).decode()


def write_private(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by the owner only (0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
