"""Release REST routes on the real app: upload by role, list/show/delete, robot downloads."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from api_harness import Api, release_tar

from lekiwi_fleet_server.api.admin import create_operator
from lekiwi_fleet_server.cli import main


def operator_headers(api: Api, role: str) -> dict[str, str]:
    _op, token = create_operator(api.services.store, f'{role}-1', role, now=time.time())
    return {'Authorization': f'Bearer {token}'}


def test_operators_upload_viewers_cannot_and_robots_download_by_range(api: Api) -> None:
    body = release_tar({'launch/robot.launch.py': b'x' * 1000, 'README': b'hello'})
    viewer = api.client.post('/api/v1/releases?version=1.0', content=body, headers=api.viewer)
    assert viewer.status_code == 403
    op = operator_headers(api, 'operator')
    created = api.client.post('/api/v1/releases?version=1.0', content=body, headers=op)
    assert created.status_code == 201, created.text
    assert created.json()['files'] == 2 and created.json()['total_bytes'] == 1005
    again = api.client.post('/api/v1/releases?version=1.0', content=body, headers=op)
    assert again.status_code == 409
    listed = api.client.get('/api/v1/releases', headers=api.viewer).json()
    assert [r['version'] for r in listed] == ['1.0']
    assert api.client.get('/api/v1/releases/9', headers=api.viewer).status_code == 404

    token = api.enrol('kiwi-1')
    robot = {'Authorization': f'Bearer {token}', 'X-Robot-Id': 'kiwi-1'}
    assert api.client.get('/api/v1/releases/1.0/manifest').status_code == 401
    wrong = {'Authorization': 'Bearer nope', 'X-Robot-Id': 'kiwi-1'}
    assert api.client.get('/api/v1/releases/1.0/manifest', headers=wrong).status_code == 401
    manifest = api.client.get('/api/v1/releases/1.0/manifest', headers=robot)
    assert hashlib.sha256(manifest.content).hexdigest() == created.json()['manifest_sha256']
    entry = next(e for e in json.loads(manifest.content)['entries']
                 if e['path'] == 'launch/robot.launch.py')
    part = api.client.get(f'/api/v1/blobs/{entry["sha256"]}',
                          headers=robot | {'Range': 'bytes=600-'})
    assert part.status_code == 206 and part.content == b'x' * 400
    assert api.client.get('/api/v1/blobs/' + '0' * 64, headers=robot).status_code == 404
    assert api.client.get('/api/v1/blobs/nothex', headers=robot).status_code == 422

    assert api.client.delete('/api/v1/releases/1.0', headers=api.viewer).status_code == 403
    assert api.client.delete('/api/v1/releases/1.0', headers=op).status_code == 204
    assert api.client.delete('/api/v1/releases/1.0', headers=op).status_code == 404


@pytest.mark.parametrize('body', [b'garbage' * 50, release_tar({'../escape': b'x'})])
def test_a_bad_tarball_is_refused_with_a_reason_and_nothing_is_stored(
        api: Api, body: bytes) -> None:
    response = api.client.post('/api/v1/releases?version=2.0', content=body, headers=api.admin)
    assert response.status_code == 422 and response.json()['detail']
    assert api.client.get('/api/v1/releases', headers=api.admin).json() == []


def test_cli_release_push_stores_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv('LEKIWI_DATABASE_URL', f'sqlite:///{tmp_path / "fleet.db"}')
    monkeypatch.setenv('LEKIWI_DATA_DIR', str(tmp_path / 'data'))
    tree = tmp_path / 'tree'
    (tree / 'launch').mkdir(parents=True)
    (tree / 'launch' / 'robot.launch.py').write_bytes(os.urandom(100))
    os.symlink('launch/robot.launch.py', tree / 'entry')
    assert main(['release', 'push', str(tree), '--version', '3.1']) == 0
    assert 'release 3.1: 1 files, 100 bytes' in capsys.readouterr().out
    assert main(['release', 'push', str(tree), '--version', '3.1']) == 1
    assert 'already exists' in capsys.readouterr().err
    assert main(['release', 'push', str(tmp_path / 'none'), '--version', '3.2']) == 1
    os.symlink('/etc/passwd', tree / 'evil')
    assert main(['release', 'push', str(tree), '--version', '3.3']) == 1
    assert 'leaves the release' in capsys.readouterr().err
    assert main(['create-operator', 'olga', '--role', 'operator']) == 0
