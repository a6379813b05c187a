"""What API tests hold: the app's client, services and operator headers; frames and tarballs."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

from lekiwi_fleet_server.api.services import FleetServices

ADMIN_TOKEN = 'lkw_test_admin_token_0123456789'
BOOT = 'aaaabbbbccccdddd'


@dataclass
class Api:
    client: TestClient
    services: FleetServices
    admin: dict[str, str]
    viewer: dict[str, str]

    @property
    def gateway_url(self) -> str:
        return f'ws://127.0.0.1:{self.services.gateway.port}/'

    def enrol(self, robot_id: str, tags: list[str] | None = None) -> str:
        response = self.client.post('/api/v1/robots', headers=self.admin,
                                    json={'robot_id': robot_id, 'tags': tags or []})
        assert response.status_code == 201, response.text
        return str(response.json()['token'])


def robot_connection(api: Api, robot_id: str, token: str) -> ClientConnection:
    ws = connect(api.gateway_url, open_timeout=5)
    ws.send(json.dumps({'op': 'auth', 'robot_id': robot_id, 'token': token,
                        'protocol': ['lekiwi-fleet/1']}))
    assert json.loads(ws.recv(timeout=5))['msg'] == 'authenticated'
    return ws


def event_frame(seq: int, robot_id: str) -> dict[str, Any]:
    return {'op': 'publish', 'topic': 'fleet/events', 'boot_id': BOOT, 'seq': seq,
            'msg': {'header': {'stamp': {'sec': 1, 'nanosec': 0}, 'frame_id': ''},
                    'robot_id': robot_id, 'boot_id': BOOT, 'sequence': seq, 'severity': 1,
                    'event_type': 'bench.note', 'payload_json': '{}'}}


def release_tar(files: dict[str, bytes]) -> bytes:
    """Return a gzipped tarball of `files` (name: content), as a release upload's body."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
