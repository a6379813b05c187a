"""A stand-in for the fleet API's polling routes in the uplink's unit tests (asyncio, loopback).

It answers what docs/robot-protocol.md section 7 says, in the test's own event loop: the
session opens with the robot's `auth` frame and token, POSTed publish frames are "committed"
once per (boot_id, seq) and acked in the answer, a GET hands out the queued commands, and
`refuse_frames` makes every frames request a 409 (the session gone). It is not the real server:
the system test tests/test_uplink_fallback.py runs the agent against that one.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit


class PollingStandIn:
    """The polling routes of one robot, on 127.0.0.1 (port 0)."""

    def __init__(self, robot_id: str, token: str) -> None:
        self.robot_id, self.token = robot_id, token
        self.committed: list[tuple[str, int]] = []
        self.responses: list[dict[str, Any]] = []
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.refuse_frames = False
        self.requests = 0
        self.gzipped = 0  # POST bodies that came gzipped
        self.post_delay_s = 0.0  # a POST answers this late (its frames are committed at once)
        self.sent: list[tuple[str, int]] = []  # every publish frame received, resends too
        # A key-bound robot's public key (base64 Ed25519): each request must prove it, as the
        # server's api/robot_auth.py asks (X-Robot-Key-Proof over a key challenge's nonce).
        self.public_key: str | None = None
        self.nonces: list[str] = []
        self.proved = 0  # requests whose key proof was good
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, '127.0.0.1', 0)
        return f'http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}'

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                lines = head.decode().split('\r\n')
                method, target, _ = lines[0].split(' ', 2)
                headers = {k.lower(): v.strip() for k, v in
                           (line.split(':', 1) for line in lines[1:] if ':' in line)}
                body = await reader.readexactly(int(headers.get('content-length', '0')))
                status, frames = await self._answer(method, target, headers, body)
                payload = b''.join(json.dumps(f).encode() + b'\n' for f in frames)
                writer.write(f'HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n'
                             'Content-Type: application/x-ndjson\r\n\r\n'.encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def _answer(self, method: str, target: str, headers: dict[str, str],
                      body: bytes) -> tuple[int, list[dict[str, Any]]]:
        self.requests += 1
        url = urlsplit(target)
        if headers.get('authorization') != f'Bearer {self.token}' \
                or headers.get('x-robot-id') != self.robot_id:
            return 401, []
        if self.public_key is not None:
            if url.path == '/api/v1/robot/key-challenge':
                self.nonces.append(f'nonce-{len(self.nonces)}')
                return 200, [{'robot_id': self.robot_id, 'nonce': self.nonces[-1],
                              'expires_in_s': 60, 'key_bound': True,
                              'header': 'X-Robot-Key-Proof'}]
            if not self._proof_holds(headers.get('x-robot-key-proof', ''), method, url.path):
                return 401, []
            self.proved += 1
        if headers.get('content-encoding') == 'gzip':  # the agent gzips its larger POSTs
            body = gzip.decompress(body)
            self.gzipped += 1
        frames = [json.loads(line) for line in body.split(b'\n') if line.strip()]
        if url.path == '/api/v1/robot/uplink/session':
            assert frames[0]['op'] == 'auth' and frames[0]['token'] == self.token
            return 200, [{'op': 'status', 'level': 'info', 'id': 'auth', 'msg': 'authenticated',
                          'protocol': frames[0]['protocol'][0], 'robot_id': self.robot_id}]
        if self.refuse_frames:
            return 409, []
        if method == 'GET':
            wait = float(parse_qs(url.query).get('wait_s', ['0'])[0])
            try:
                return 200, [await asyncio.wait_for(self.commands.get(), wait)]
            except TimeoutError:
                return 200, []
        acks: dict[str, list[list[int]]] = {}
        for frame in frames:
            if frame['op'] == 'publish':
                key = (frame['boot_id'], frame['seq'])
                self.sent.append(key)
                if key not in self.committed:
                    self.committed.append(key)
                acks.setdefault(frame['boot_id'], []).append([frame['seq'], frame['seq']])
            else:
                self.responses.append(frame)
        if self.post_delay_s:
            await asyncio.sleep(self.post_delay_s)
        return 200, [{'op': 'publish', 'topic': 'fleet/ack',
                      'msg': {'boot_id': boot, 'ranges': ranges}} for boot, ranges in acks.items()]

    def _proof_holds(self, header: str, method: str, path: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        parts = header.split(' ')
        if len(parts) != 3 or parts[0] != self.public_key or parts[1] not in self.nonces:
            return False
        signed = (b'lekiwi-request-proof/1\n' + self.robot_id.encode() + b'\n'
                  + parts[1].encode() + b'\n' + method.encode() + b' ' + path.encode())
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key)).verify(
                base64.b64decode(parts[2]), signed)
        except (InvalidSignature, ValueError):
            return False
        return True
