"""The key proof of an admitted robot's logins, on the robot's side (uplink/key_proof.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from protocol_schema import validate_robot_frame
from test_uplink_session import AUTH_OK, Rig

from lekiwi_agent_ros.uplink.admission_key import AdmissionKey
from lekiwi_agent_ros.uplink.key_proof import key_proof_message


def challenge(nonce: str | None = 'n' * 43, robot_id: str = 'kiwi-001') -> str:
    return json.dumps({'op': 'status', 'level': 'info', 'id': 'key_proof',
                       'msg': 'key_challenge', 'robot_id': robot_id, 'nonce': nonce})


def test_a_robot_with_a_token_and_a_key_offers_the_key_and_signs_the_challenge(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    key = AdmissionKey.load_or_create(str(tmp_path / 'key.pem'))
    first = validate_robot_frame(rig.session.connection_opened('lkw_have', key))
    assert first['token'] == 'lkw_have' and first['key_proof'] == {'public_key': key.public_key}
    (signed,) = [validate_robot_frame(f) for f in rig.session.receive(challenge()).frames]
    assert signed['token'] == 'lkw_have' and signed['key_proof']['public_key'] == key.public_key
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    public.verify(base64.b64decode(signed['key_proof']['signature']),
                  key_proof_message('kiwi-001', 'n' * 43))
    assert rig.session.receive(AUTH_OK).authenticated and rig.session.ready
    # Once authenticated, a late challenge is not answered.
    assert rig.session.receive(challenge()).frames == []


def test_a_challenge_it_cannot_use_is_ignored(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    key = AdmissionKey.load_or_create(str(tmp_path / 'key.pem'))
    rig.session.connection_opened('lkw_have', key)
    for frame in (challenge(None), challenge(robot_id='kiwi-002'), challenge('')):
        assert rig.session.receive(frame).frames == []
    assert rig.session.stats.malformed_total == 3


def test_a_robot_without_a_key_sends_its_token_alone_and_ignores_challenges(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    first = validate_robot_frame(rig.session.connection_opened('lkw_have'))
    assert 'key_proof' not in first
    assert rig.session.receive(challenge()).frames == []
