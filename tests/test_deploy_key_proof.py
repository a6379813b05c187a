"""A key-bound robot's release download: the real deploy steps against the real server.

The robot's token alone is refused (the server's api/robot_auth.py); the deploy steps with the
robot's admission key prove it at each request (deploy/request_proof.py) and download.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from deploy_harness import make_release, push_release
from system_harness import FleetServerProcess

from lekiwi_agent_ros.deploy.executor import Goal, StepFailed
from lekiwi_agent_ros.deploy.health import HealthRules
from lekiwi_agent_ros.deploy.robot_steps import RobotSteps, StepsConfig
from lekiwi_agent_ros.deploy.supervisor import AppSupervisor
from lekiwi_agent_ros.uplink.admission_key import AdmissionKey
from lekiwi_fleet_server.domain.admission import key_fingerprint
from lekiwi_fleet_server.domain.key_binding import key_tag


def _steps(root: Path, server: FleetServerProcess, token: str, key_file: str) -> RobotSteps:
    config = StepsConfig(root, server.api_url, 'kiwi-bound', token, min_free_bytes=0,
                         key_file=key_file)
    return RobotSteps(config, AppSupervisor(['sleep', '60'], root / 'app.pid'), HealthRules())


def test_a_key_bound_robot_downloads_with_its_key_proof_and_not_with_its_token_alone(
        fleet_server: FleetServerProcess, tmp_path: Path) -> None:
    key_file = tmp_path / 'admission_key.pem'
    key = AdmissionKey.load_or_create(str(key_file))
    fingerprint = key_fingerprint(base64.b64decode(key.public_key))
    token = fleet_server.enrol('kiwi-bound', [key_tag(fingerprint)])
    payload = os.urandom(200_000)
    push_release(fleet_server, make_release(tmp_path, '2.0', 'good', payload), '2.0')
    info = fleet_server.request('GET', '/api/v1/releases/2.0')
    goal = Goal('d1', '2.0', f'{fleet_server.api_url}/api/v1/releases/2.0/manifest',
                info['manifest_sha256'])

    without = _steps(tmp_path / 'no-key', fleet_server, token, '')
    with pytest.raises(StepFailed, match='HTTP 401'):
        without.download(goal, lambda: False)

    proved = _steps(tmp_path / 'with-key', fleet_server, token, str(key_file))
    moved, full = proved.download(goal, lambda: False)
    assert moved == full >= len(payload)
    cached = {p.read_bytes() for p in (tmp_path / 'with-key' / 'cache').iterdir()}
    assert payload in cached

    fleet_server.request('POST', '/api/v1/robots/kiwi-bound/revoke')
    again = _steps(tmp_path / 'revoked', fleet_server, token, str(key_file))
    with pytest.raises(StepFailed, match='401'):
        again.download(goal, lambda: False)
