"""The key proof of a key-bound robot's downloads: the challenge fetched over urllib.

key_challenge.py says what the proof is and when a nonce is renewed; this module asks the
server for the challenge (`GET /api/v1/robot/key-challenge`) when that says so.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from lekiwi_agent_ros.deploy.key_challenge import CHALLENGE_PATH, KeyChallenge, KeySigner


class RequestProofError(Exception):
    """The key challenge could not be fetched or was not understood."""


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
        self._now = now
        self._timeout = timeout_s
        self._fetch = fetch
        self._challenge = KeyChallenge(robot_id, signer)

    def headers(self, method: str, url: str) -> dict[str, str]:
        """Return the headers that prove the key for `method url`; raise RequestProofError."""
        now = self._now()
        if self._challenge.due(now):
            answer = self._fetch(self._url, {'Authorization': f'Bearer {self._token}',
                                             'X-Robot-Id': self._robot_id}, self._timeout)
            try:
                self._challenge.answered(answer, now)
            except ValueError as exc:
                raise RequestProofError(f'key challenge: {exc}') from None
        return self._challenge.header(method, urllib.parse.urlsplit(url).path)


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
